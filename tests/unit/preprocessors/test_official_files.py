"""The real official annotator files, where a folder of them is given (``AFFORDANCE_ANNOTATORS``).

CI has no such files (nothing is downloaded), so these skip there; on a machine with the files
(``AFFORDANCE_ANNOTATORS=ComfyUI/models/annotators``) each present file must be byte-for-byte the official
one and load into our network with every key and shape matching.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from affordance.preprocessors.networks import NETWORK_FOR_FILE
from affordance.preprocessors.weights import ANNOTATOR_FILES, load_annotator, sha256_of, unwrap_state_dict


def test_every_official_file_has_a_network():
    assert set(NETWORK_FOR_FILE) == set(ANNOTATOR_FILES)


@pytest.mark.parametrize("name", sorted(ANNOTATOR_FILES))
def test_official_file_is_the_published_one_and_loads(name):
    folder = os.environ.get("AFFORDANCE_ANNOTATORS")
    if not folder:
        pytest.skip("set AFFORDANCE_ANNOTATORS to a folder holding official annotator files")
    path = Path(folder) / name
    if not path.is_file():
        pytest.skip(f"{name} is not in {folder}")
    info = ANNOTATOR_FILES[name]
    assert path.stat().st_size == info.size, f"{path} is not the published {name} (size)"
    assert sha256_of(path) == info.sha256, f"{path} is not the published {name} (SHA-256)"
    net = load_annotator(path, NETWORK_FOR_FILE[name](), name)
    raw = unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True), str(path))
    for key, value in net.state_dict().items():  # every tensor of the file arrived, none was left at random
        assert torch.equal(value, raw[key].to(value.dtype)), key
