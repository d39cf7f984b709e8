"""Our lineart (fine, coarse) and anime lineart against controlnet-aux's detectors on the same (seeded) weights."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from affordance.preprocessors.lineart import LINEART_COARSE_FILE, LINEART_FILE, LineartNet, lineart
from affordance.preprocessors.lineart_anime import LINEART_ANIME_FILE, LineartAnimeNet, lineart_anime
from affordance.preprocessors.weights import load_annotator

aux_lineart = pytest.importorskip("controlnet_aux.lineart")
aux_anime = pytest.importorskip("controlnet_aux.lineart_anime")


def _tensor(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(im.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def _levels(hint: torch.Tensor) -> np.ndarray:
    return (hint[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int32)


_CACHE: dict[str, object] = {}  # the nets are built once per session (the fixture `seeded` is per test)


@pytest.fixture
def lineart_nets(tmp_path_factory, seeded):
    if "lineart" in _CACHE:
        return _CACHE["lineart"]
    folder = tmp_path_factory.mktemp("lineart")
    ours = {}
    for name, seed in ((LINEART_FILE, 21), (LINEART_COARSE_FILE, 22)):
        net = seeded(aux_lineart.Generator(3, 1, 3), seed)
        torch.save(net.state_dict(), folder / name)  # the official layout: a plain state dict
        ours[name] = load_annotator(folder / name, LineartNet(), name)
    ref = aux_lineart.LineartDetector.from_pretrained(
        str(folder), filename=LINEART_FILE, coarse_filename=LINEART_COARSE_FILE
    )
    _CACHE["lineart"] = ours, ref
    return ours, ref


@pytest.fixture
def anime_nets(tmp_path_factory, seeded):
    if "anime" in _CACHE:
        return _CACHE["anime"]
    folder = tmp_path_factory.mktemp("lineart_anime")
    norm = functools.partial(torch.nn.InstanceNorm2d, affine=False, track_running_stats=False)
    net = seeded(aux_anime.UnetGenerator(3, 1, 8, 64, norm_layer=norm, use_dropout=False), 23)
    # The official netG.pth was saved from DataParallel: every key starts with "module.".
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, folder / LINEART_ANIME_FILE)
    ours = load_annotator(folder / LINEART_ANIME_FILE, LineartAnimeNet(), LINEART_ANIME_FILE)
    ref = aux_anime.LineartAnimeDetector.from_pretrained(str(folder), filename=LINEART_ANIME_FILE)
    _CACHE["anime"] = ours, ref
    return ours, ref


@pytest.mark.parametrize("coarse", [False, True])
def test_lineart_equals_reference(lineart_nets, photo_512, coarse):
    ours, ref = lineart_nets
    net = ours[LINEART_COARSE_FILE if coarse else LINEART_FILE]
    want = np.asarray(ref(photo_512, coarse=coarse, detect_resolution=512, image_resolution=512, output_type="np"))
    got = _levels(lineart(_tensor(photo_512), net, resolution=512))
    diff = np.abs(want.astype(np.int32) - got)
    # Same network and weights; convolution order differs, so a level can flip where the reference truncates.
    assert diff.max() <= 1, f"max difference {diff.max()} levels"
    assert (diff == 0).mean() >= 0.99
    assert want.std() > 5  # the comparison is not between blank maps


def test_lineart_polarity_is_white_lines_on_black(lineart_nets, photo):
    """The hint is 255 - the network's 8-bit drawing (the network draws dark lines on white paper)."""
    ours, ref = lineart_nets
    im = photo("astronaut")
    with torch.no_grad():
        drawing = ref.model(torch.from_numpy(im).float().permute(2, 0, 1)[None] / 255.0)[0, 0].numpy()
    drawing = (drawing * 255.0).clip(0, 255).astype(np.uint8)
    got = _levels(lineart(_tensor(im), ours[LINEART_FILE], resolution=512))[..., 0]
    assert np.abs((255 - drawing.astype(np.int32)) - got).max() <= 1


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_lineart_anime_equals_reference(anime_nets, photo, name):
    ours, ref = anime_nets
    im = photo(name)
    want = np.asarray(ref(im, detect_resolution=512, image_resolution=512, output_type="np"))
    got = _levels(lineart_anime(_tensor(im), ours, resolution=512))
    diff = np.abs(want.astype(np.int32) - got)
    assert diff.max() <= 1, f"max difference {diff.max()} levels"
    assert (diff == 0).mean() >= 0.99
    assert want.std() > 5


def test_lineart_anime_resizes_to_multiples_of_256_like_the_reference(anime_nets, photo):
    """A 320 x 320 detection image runs at 512 x 512 and comes back by bicubic resizing on both sides."""
    import cv2

    ours, ref = anime_nets
    im = cv2.resize(photo("astronaut"), (320, 320), interpolation=cv2.INTER_AREA)
    want = np.asarray(ref(im, detect_resolution=320, image_resolution=320, output_type="np"))
    got = _levels(lineart_anime(_tensor(im), ours, resolution=320))
    diff = np.abs(want.astype(np.int32) - got)
    # torch's bicubic and OpenCV's INTER_CUBIC use the same kernel; their float rounding differs slightly.
    assert diff.max() <= 2, f"max difference {diff.max()} levels"
    assert (diff == 0).mean() >= 0.98
    assert want.std() > 5
