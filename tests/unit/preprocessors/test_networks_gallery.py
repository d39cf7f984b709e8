"""Every learned hint of the command line's gallery (`python -m affordance hints --annotators`) runs its preprocessor with the requested resolution, the
defaults of its node (HED and PiDiNet not in safe mode, openpose_full with body, hands and face) and the
networks it loaded, in the order of its files.

The CLI test builds only the HED, PiDiNet and M-LSD files and checks the output sizes, which ``at_resolution``
restores whatever the detection resolution was.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from affordance.preprocessors import networks

FUNCS = (
    "hed",
    "fake_scribble",
    "pidinet",
    "mlsd",
    "lineart",
    "lineart_anime",
    "midas_depth",
    "midas_normal",
    "normal_bae",
    "openpose",
)


@pytest.fixture
def calls(monkeypatch):
    """Replace each preprocessor named in networks by a recorder of its bound arguments (defaults applied)."""
    seen: list[tuple[str, dict]] = []
    for name in FUNCS:
        real = getattr(networks, name)
        sig = inspect.signature(real)

        def fake(*args, _name=name, _sig=sig, **kwargs):
            bound = _sig.bind(*args, **kwargs)
            bound.apply_defaults()
            seen.append((_name, dict(bound.arguments)))
            out = torch.zeros(1, 3, 4, 4)
            return (out, []) if _name == "openpose" else out

        monkeypatch.setattr(networks, name, fake)
    return seen


@pytest.mark.parametrize("key", list(networks.LEARNED_GALLERY))
def test_gallery_entry_passes_resolution_networks_and_node_defaults(calls, key):
    files, run = networks.LEARNED_GALLERY[key]
    x = torch.rand(1, 3, 4, 4)
    nets = [object() for _ in files]
    out = run(x, nets, 123)
    assert out.shape == (1, 3, 4, 4)
    ((name, args),) = calls
    assert args["image"] is x and args["resolution"] == 123
    nargs = [args[k] for k in ("net", "body_net", "hand_net", "face_net") if k in args and args[k] is not None]
    assert nargs == nets  # each network in the order of the entry's files
    if "safe" in args:
        assert args["safe"] is False
    if key == "openpose_full":
        assert (args["detect_body"], args["detect_hand"], args["detect_face"]) == (True, True, True)
    elif key == "openpose":
        assert (args["detect_body"], args["detect_hand"], args["detect_face"]) == (True, False, False)
