"""What every learned preprocessor node declares: its own memory estimate."""

from __future__ import annotations

from affordance.nodes import preprocess_learned
from affordance.nodes.preprocess_learned import _Learned


# Round 10 (mutant 072): every learned preprocessor sets its own measured WORK_BYTES_PER_PIXEL; none falls back on
# the base class's worst case (4500, NormalBAE's), which would chunk Lineart 2.5x finer and refuse images that fit.
def test_every_learned_node_sets_its_own_memory_estimate():
    nodes = [c for c in vars(preprocess_learned).values() if isinstance(c, type) and issubclass(c, _Learned) and c is not _Learned]
    assert nodes
    for cls in nodes:
        assert "WORK_BYTES_PER_PIXEL" in vars(cls), cls.__name__
    assert preprocess_learned.LineartPreprocessor.WORK_BYTES_PER_PIXEL < _Learned.WORK_BYTES_PER_PIXEL
