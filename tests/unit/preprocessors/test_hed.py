"""HED network layout, post-processing formulas and the annotator weight loader."""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from affordance.preprocessors.hed import HED_FILE, HEDNet, fake_scribble, hed, hed_edges, safe_step
from affordance.preprocessors.weights import AnnotatorWeightsError, load_annotator, missing_file_error

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _random_net(seed: int = 0) -> HEDNet:
    net = HEDNet()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(net.named_parameters()):
            fan_in = p[0].numel() if p.ndim > 1 else 0
            p.copy_(torch.randn(p.shape, generator=g) * ((1.0 / fan_in) ** 0.5 if fan_in else 0.05))
    return net.eval()


def test_keys_equal_the_official_file_layout():
    fixture = json.loads((FIXTURES / "annotator_hed_keys.json").read_text())["keys"]
    assert {k: list(v.shape) for k, v in HEDNet().state_dict().items()} == fixture
    assert sum(v.numel() for v in HEDNet().state_dict().values()) == 14_716_168


def test_side_outputs_and_edge_map():
    net = _random_net()
    x = torch.rand(2, 3, 64, 96) * 255
    sides = net(x)
    assert [tuple(s.shape) for s in sides] == [(2, 1, 64 // 2**i, 96 // 2**i) for i in range(5)]
    edges = hed_edges(net, x)
    assert edges.shape == (2, 1, 64, 96) and 0 <= edges.min() and edges.max() <= 1
    assert torch.equal((edges * 255).round(), (edges * 255).round().floor())  # 8-bit levels


def test_safe_step_formula():
    x = torch.tensor([0.0, 0.2, 0.34, 0.5, 0.67, 0.99, 1.0])
    assert safe_step(x).tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 1.5]


def test_hed_and_fake_scribble_keep_size():
    net = _random_net(1)
    x = torch.rand(1, 3, 70, 90)
    out = hed(x, net, resolution=64)
    assert out.shape == (1, 3, 70, 90)
    strokes = fake_scribble(x, net, resolution=64)
    assert strokes.shape == (1, 3, 70, 90) and set(strokes.unique().tolist()) <= {0.0, 1.0}


def test_fake_scribble_turns_a_strong_edge_into_a_stroke_along_it():
    """A bright vertical edge (HED 255 over x = 26..34) becomes a bold stroke over it and nothing far from it
    (ControlNet's NMS(127, 3), blur(3), > 4; the thinning itself is compared with the original in
    tests/reference)."""
    from affordance.preprocessors.hed import fake_scribble_levels

    edges = torch.zeros(1, 1, 48, 64)
    edges[..., 26:35] = 255.0
    strokes = fake_scribble_levels(edges)[0, 0]
    assert strokes.shape == (48, 64) and set(strokes.unique().tolist()) == {0.0, 1.0}
    assert strokes[:, 30].all() and not strokes[:, :20].any() and not strokes[:, 41:].any()


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "module", "safetensors"])
def test_loader_unwraps_official_containers(tmp_path, wrap):
    net = _random_net(2)
    sd = net.state_dict()
    path = tmp_path / HED_FILE
    if wrap == "state_dict":
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, path)
    elif wrap == "module":
        torch.save({"module." + k: v for k, v in sd.items()}, path)
    elif wrap == "safetensors":
        path = tmp_path / "ControlNetHED.safetensors"
        save_file(sd, path)
    else:
        torch.save(sd, path)
    loaded = load_annotator(path, HEDNet(), HED_FILE)
    x = torch.rand(1, 3, 32, 32) * 255
    for a, b in zip(loaded(x), net(x)):
        torch.testing.assert_close(a, b)


def test_cut_safetensors_annotator_is_a_typed_error(tmp_path):
    """A safetensors conversion cut short is named as damaged (it is read into memory, never memory-mapped)."""
    path = tmp_path / HED_FILE
    save_file(_random_net(2).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AnnotatorWeightsError, match="is a damaged safetensors file"):
        load_annotator(path, HEDNet(), HED_FILE)


def test_missing_file_names_folder_source_and_size(tmp_path):
    err = missing_file_error(HED_FILE, [str(tmp_path)])
    msg = str(err)
    assert HED_FILE in msg and str(tmp_path) in msg and "huggingface.co/lllyasviel/Annotators" in msg and "29 MB" in msg
    with pytest.raises(AnnotatorWeightsError, match="were not found"):
        load_annotator(tmp_path / HED_FILE, HEDNet(), HED_FILE)


def test_wrong_annotator_under_official_name(tmp_path):
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / HED_FILE)  # an OpenPose-like file
    with pytest.raises(AnnotatorWeightsError, match=r"does not hold the weights of ControlNetHED.pth \(37 missing"):
        load_annotator(tmp_path / HED_FILE, HEDNet(), HED_FILE)
    # without a name the file's own name is the one expected, with the official file's size beside it
    with pytest.raises(AnnotatorWeightsError) as info:
        load_annotator(tmp_path / HED_FILE, HEDNet())
    assert "does not hold the weights of ControlNetHED.pth (37 missing" in str(info.value)
    assert "; the official ControlNetHED.pth is 29,444,406 bytes." in str(info.value)


class _Payload:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_malicious_pickle_refused(tmp_path):
    torch.save({"norm": torch.zeros(1), "x": _Payload(tmp_path / "pwned")}, tmp_path / HED_FILE)
    with pytest.raises(AnnotatorWeightsError, match="needs to run code to load; it was refused"):
        load_annotator(tmp_path / HED_FILE, HEDNet(), HED_FILE)
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_lfs_files(tmp_path):
    torch.save(_random_net().state_dict(), tmp_path / HED_FILE)
    data = (tmp_path / HED_FILE).read_bytes()
    (tmp_path / HED_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(AnnotatorWeightsError, match="truncated or damaged"):
        load_annotator(tmp_path / HED_FILE, HEDNet(), HED_FILE)
    (tmp_path / HED_FILE).write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(AnnotatorWeightsError, match="Git LFS pointer"):
        load_annotator(tmp_path / HED_FILE, HEDNet(), HED_FILE)


@pytest.mark.parametrize(
    ("content", "start"),
    [
        (b"<!DOCTYPE html>\r\n<html><head><title>Hugging Face</title>", "<!DOCTYPE html>"),
        (b"not found\n\nThe file you asked for is gone.", "not found"),
        (b"name\tsize\tsha256\nControlNetHED.pth\t29444406\n", "name"),
    ],
)
def test_a_text_file_under_an_annotators_name_is_named_as_text(tmp_path, content, start):
    """A saved web page or a table (line breaks and tabs early in the file, as saved on Windows too) is reported
    as text with its first characters, not as damaged weights."""
    (tmp_path / HED_FILE).write_bytes(content)
    with pytest.raises(AnnotatorWeightsError, match=f"is a text file beginning '{start}"):
        load_annotator(tmp_path / HED_FILE, HEDNet(), HED_FILE)


def test_a_bfloat16_network_takes_a_float32_image():
    """The network may be in any dtype (as its docstring says): the image is cast to it, the hint comes back float32."""
    out = hed(torch.rand(1, 3, 64, 64), _random_net().to(torch.bfloat16), resolution=64)
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32
    assert 0.0 <= out.min().item() and out.max().item() <= 1.0
