"""Preprocessor nodes without ComfyUI: IMAGE in, IMAGE out at the input size; validation before running."""

from __future__ import annotations

import gc
import inspect
import weakref

import pytest
import torch

from affordance.nodes import NODE_CLASS_MAPPINGS
from affordance.nodes.preprocess import NODES, CannyPreprocessor
from affordance.preprocessors import ParameterError

LEARNED = {  # these need annotator weights (see the stub-host test below)
    "AST_HEDPreprocessor",
    "AST_FakeScribblePreprocessor",
    "AST_LineartPreprocessor",
    "AST_LineartAnimePreprocessor",
    "AST_NormalBAEPreprocessor",
    "AST_MiDaSDepthPreprocessor",
    "AST_MiDaSNormalPreprocessor",
    "AST_OpenPosePreprocessor",
    "AST_PiDiNetPreprocessor",
    "AST_MLSDPreprocessor",
}
SIMPLE = [k for k, (cls, _) in NODES.items() if "resolution" in cls.INPUT_TYPES()["required"] and k not in LEARNED]


def _defaults(cls) -> dict:
    out = {}
    for name, (_kind, opts) in cls.INPUT_TYPES()["required"].items():
        if name != "image" and isinstance(opts, dict) and "default" in opts:
            out[name] = opts["default"]
    return out


def test_all_preprocessor_nodes_registered():
    expected = {
        "AST_CannyPreprocessor",
        "AST_ScribblePreprocessor",
        "AST_ScribbleXDoGPreprocessor",
        "AST_BinaryPreprocessor",
        "AST_LineartStandardPreprocessor",
        "AST_ShufflePreprocessor",
        "AST_TilePreprocessor",
        "AST_ColorPreprocessor",
        "AST_LuminancePreprocessor",
        "AST_InpaintPreprocessor",
        "AST_HintResize",
        "AST_PixelPerfectResolution",
        "AST_InvertHint",
    }
    assert expected <= set(NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize("node_id", SIMPLE)
def test_node_keeps_input_size(node_id, image):
    cls = NODES[node_id][0]
    (out,) = getattr(cls(), cls.FUNCTION)(image(b=3, h=72, w=40), **_defaults(cls))["result"]
    assert out.shape == (3, 72, 40, 3) and out.dtype == torch.float32 and out.device.type == "cpu"


def test_resolution_default_and_range():
    spec = CannyPreprocessor.INPUT_TYPES()["required"]
    assert spec["resolution"][1]["default"] == 512 and spec["resolution"][1]["step"] == 64
    assert spec["low_threshold"][1]["default"] == 100 and spec["high_threshold"][1]["default"] == 200


def test_canny_validation_before_execution():
    assert CannyPreprocessor.VALIDATE_INPUTS(100, 200, 512) is True
    assert "swap them" in CannyPreprocessor.VALIDATE_INPUTS(210, 200, 512)
    assert "between 0 and 255, got 300" in CannyPreprocessor.VALIDATE_INPUTS(100, 300, 512)
    # the edges of what is allowed: equal thresholds, 0 and 255, the smallest resolution
    for low, high, res in ((100, 100, 512), (0, 255, 64), (255, 255, 4096)):
        assert CannyPreprocessor.VALIDATE_INPUTS(low, high, res) is True, (low, high, res)
    assert "between 0 and 255, got 256" in CannyPreprocessor.VALIDATE_INPUTS(100, 256, 512)
    assert "between 0 and 255, got -1" in CannyPreprocessor.VALIDATE_INPUTS(-1, 200, 512)
    assert "between 64 and 4096, got 63" in CannyPreprocessor.VALIDATE_INPUTS(100, 200, 63)
    assert "between 64 and 4096, got 4097" in CannyPreprocessor.VALIDATE_INPUTS(100, 200, 4097)


def test_invert_and_inpaint_nodes(image):
    x = image(b=2, h=16, w=24)
    (inv,) = NODE_CLASS_MAPPINGS["AST_InvertHint"]().process(image=x)["result"]
    torch.testing.assert_close(inv, 1 - x)
    mask = torch.zeros(1, 16, 24)
    mask[:, :, :12] = 1
    (hint,) = NODE_CLASS_MAPPINGS["AST_InpaintPreprocessor"]().process(x, mask)["result"]
    assert torch.all(hint[:, :, :10] == -1) and torch.equal(hint[:, :, 14:], x[:, :, 14:])
    with pytest.raises(ValueError, match="rank 4"):
        NODE_CLASS_MAPPINGS["AST_InpaintPreprocessor"]().process(x, torch.ones(1, 16, 24, 3))


@pytest.mark.parametrize("bad", [[1], torch.zeros(16, 24, 3), None])
def test_inpaint_node_names_an_image_that_is_not_one_before_its_mask(bad):
    """With a batch of two masks, a non-IMAGE was reported as "a batch of 2 masks does not fit 1 image(s)"."""
    from affordance.preprocessors import ImageInputError

    with pytest.raises(ImageInputError, match=r"image must be a ComfyUI IMAGE \(batch, height, width, channels\)"):
        NODE_CLASS_MAPPINGS["AST_InpaintPreprocessor"]().process(bad, torch.zeros(2, 16, 24))


def test_hint_resize_from_latent(image):
    node = NODE_CLASS_MAPPINGS["AST_HintResize"]()
    (out,) = node.process(image(h=48, w=96), "crop_and_resize", 512, 512, latent={"samples": torch.zeros(1, 4, 8, 12)})[
        "result"
    ]
    assert out.shape == (1, 64, 96, 3)
    (out,) = node.process(image(h=48, w=96), "resize_and_fill", 64, 64)["result"]
    assert out.shape == (1, 64, 64, 3)


def test_hint_resize_zero_size_is_a_typed_error(image):
    """A linked width/height skips ComfyUI's min/max check: 0 divided by zero in the memory estimate. A connected
    latent outside 8..16384 px is refused naming its size in latent units and the hint's in pixels."""
    node = NODE_CLASS_MAPPINGS["AST_HintResize"]()
    for w, h in ((0, 64), (64, 0)):
        with pytest.raises(ParameterError, match="must be an integer between 8 and 16384, got 0"):
            node.process(image(h=16, w=16), "just_resize", w, h)
    with pytest.raises(ParameterError, match=r"the connected latent is 0x0, so the hint would be 0x0 px"):
        node.process(image(h=16, w=16), "just_resize", 64, 64, latent={"samples": torch.zeros(1, 4, 0, 0)})
    with pytest.raises(ParameterError, match=r"the connected latent is 2049x3, so the hint would be 16392x24 px"):
        node.process(image(h=16, w=16), "just_resize", 64, 64, latent={"samples": torch.zeros(1, 4, 3, 2049)})
    # the limits themselves are allowed: a 1x2048 latent takes an 8x16384 px hint
    (out,) = node.process(image(h=16, w=16), "just_resize", 64, 64, latent={"samples": torch.zeros(1, 4, 2048, 1)})[
        "result"
    ]
    assert out.shape == (1, 16384, 8, 3)


def test_pixel_perfect_node(image):
    node = NODE_CLASS_MAPPINGS["AST_PixelPerfectResolution"]()
    assert node.process(image(h=480, w=640), "crop_and_resize", 512, 512) == (512,)
    assert node.process(
        image(h=480, w=640), "resize_and_fill", 0, 0, latent={"samples": torch.zeros(1, 4, 64, 64)}
    ) == (384,)
    # a video latent (batch, channels, frames, h, w) gives its frames' size x 8 too
    video = {"samples": torch.zeros(1, 16, 5, 60, 104)}
    assert node.process(image(h=480, w=832), "crop_and_resize", 0, 0, latent=video) == (480,)
    (out,) = NODE_CLASS_MAPPINGS["AST_HintResize"]().process(image(h=30, w=52), "just_resize", 0, 0, latent=video)["result"]
    assert out.shape == (1, 480, 832, 3)


@pytest.mark.parametrize("bad", [torch.zeros(0, 480, 640, 3), [1, 2], torch.zeros(480, 640, 3)])
def test_pixel_perfect_and_resize_hint_name_what_is_not_an_image(bad):
    from affordance.preprocessors import ImageInputError

    with pytest.raises(ImageInputError):
        NODE_CLASS_MAPPINGS["AST_PixelPerfectResolution"]().process(bad, "crop_and_resize", 512, 512)
    with pytest.raises(ImageInputError):
        NODE_CLASS_MAPPINGS["AST_HintResize"]().process(bad, "just_resize", 64, 64)


@pytest.mark.parametrize(
    ("latent", "got"),
    [
        ({"samples": torch.zeros(4, 64)}, r"samples of shape \(4, 64\)"),
        ({"noise": 1}, r"keys \['noise'\]"),
        ([1], "list"),
    ],
)
@pytest.mark.parametrize("node_id", ["AST_HintResize", "AST_PixelPerfectResolution"])
def test_malformed_latent_is_named(image, node_id, latent, got):
    node = NODE_CLASS_MAPPINGS[node_id]()
    with pytest.raises(ParameterError, match=f"latent must be a ComfyUI LATENT .*got {got}"):
        node.process(image(h=32, w=32), "crop_and_resize", 64, 64, latent=latent)


def test_pixel_perfect_has_its_own_tooltips():
    resize = NODE_CLASS_MAPPINGS["AST_HintResize"].INPUT_TYPES()
    perfect = NODE_CLASS_MAPPINGS["AST_PixelPerfectResolution"].INPUT_TYPES()
    assert list(perfect["required"]) == list(resize["required"])  # same widgets: saved workflows rely on them
    for name in ("image", "mode", "width", "height"):
        assert perfect["required"][name][1]["tooltip"] != resize["required"][name][1]["tooltip"], name
        assert {k: v for k, v in perfect["required"][name][1].items() if k != "tooltip"} == {
            k: v for k, v in resize["required"][name][1].items() if k != "tooltip"
        }
    assert "resize" not in perfect["required"]["image"][1]["tooltip"].lower()


def test_bad_images_in_nodes(image):
    node = NODES["AST_CannyPreprocessor"][0]()
    with pytest.raises(ValueError, match="is 1x1 px"):
        node.process(image(h=1, w=1), low_threshold=100, high_threshold=200, resolution=512)
    with pytest.raises(ValueError, match="batch is empty"):
        node.process(torch.zeros(0, 16, 16, 3), low_threshold=100, high_threshold=200, resolution=512)
    rgba = image(c=4, h=16, w=16)
    assert node.process(rgba, low_threshold=100, high_threshold=200, resolution=64)["result"][0].shape == (1, 16, 16, 3)


def test_hed_nodes_load_weights_once_from_the_annotators_folder(stub_comfy, image, monkeypatch):
    from affordance.nodes import annotators
    from affordance.preprocessors.hed import HED_FILE, HEDNet

    annotators.clear_cache()
    folder = stub_comfy / "models" / "annotators"
    with pytest.raises(
        ValueError,
        match=r"'ControlNetHED.pth' \(HED soft edges, fake scribble, about 29 MB\) were not found in .*annotators",
    ):
        NODE_CLASS_MAPPINGS["AST_HEDPreprocessor"]().process(image(), safe=False, resolution=64)
    folder.mkdir(parents=True)
    torch.save(HEDNet().state_dict(), folder / HED_FILE)
    reads = []
    original = annotators.load_annotator
    monkeypatch.setattr(annotators, "load_annotator", lambda *a: reads.append(a[0]) or original(*a))
    hed_node = NODE_CLASS_MAPPINGS["AST_HEDPreprocessor"]()  # ComfyUI keeps node objects while the graph is used
    scribble_node = NODE_CLASS_MAPPINGS["AST_FakeScribblePreprocessor"]()
    (out,) = hed_node.process(image(b=2, h=40, w=56), safe=True, resolution=64)["result"]
    assert out.shape == (2, 40, 56, 3)
    (out,) = scribble_node.process(image(h=40, w=56), resolution=64)["result"]
    assert out.shape == (1, 40, 56, 3)
    (out,) = hed_node.process(image(h=40, w=56), safe=False, resolution=64)["result"]
    assert len(reads) == 1  # loaded once, kept warm, shared by both nodes
    # once no node holds it (ComfyUI's "free memory" drops its node objects), the network is released
    net = weakref.ref(hed_node.__dict__["_ast_annotators"][HED_FILE].model)
    del hed_node
    gc.collect()
    assert net() is not None and len(annotators._CACHE) == 1  # the other node still holds it
    del scribble_node
    gc.collect()
    assert net() is None and len(annotators._CACHE) == 0
    NODE_CLASS_MAPPINGS["AST_HEDPreprocessor"]().process(image(h=40, w=56), safe=False, resolution=64)
    assert len(reads) == 2  # read again when needed again
    annotators.clear_cache()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("node_id", ["AST_CannyPreprocessor", "AST_LineartStandardPreprocessor", "AST_LuminancePreprocessor"])
def test_half_precision_images_give_the_float32_hint(image, dtype, node_id):
    """An IMAGE in fp16/bf16 (some nodes emit them) is the picture its values hold: the hint is that of the same
    values in float32, not one whose 8-bit levels and filters were rounded in half precision."""
    cls = NODE_CLASS_MAPPINGS[node_id]
    x = image(b=2, h=64, w=64).to(dtype)
    (got,) = cls().process(x, **_defaults(cls))["result"]
    (ref,) = cls().process(x.float(), **_defaults(cls))["result"]
    assert got.dtype == torch.float32
    assert torch.equal(got, ref)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_annotator_name_that_is_not_a_regular_file_is_named(stub_comfy, image, kind):
    """A pipe or a link to /dev/zero under an official name: named as such, never opened (it would hang)."""
    import os

    from affordance.preprocessors import PreprocessorError
    from affordance.preprocessors.hed import HED_FILE

    folder = stub_comfy / "models" / "annotators"
    folder.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(folder / HED_FILE)
    else:
        (folder / HED_FILE).symlink_to("/dev/zero")
    with pytest.raises(PreprocessorError, match=rf"{HED_FILE} is not a regular file \(a pipe, socket or device"):
        NODE_CLASS_MAPPINGS["AST_HEDPreprocessor"]().process(image(), safe=False, resolution=64)


def test_learned_nodes_run_again_when_their_file_changes(stub_comfy, image):
    """ComfyUI keeps a node's output while its inputs and ``IS_CHANGED`` are the same: an annotator file replaced,
    removed or put back under its official name must make the node run again (as the ControlNet loader does), not
    serve the old weights' hint (or hide the missing file) until a restart."""
    import os

    from affordance.nodes import annotators
    from affordance.preprocessors.hed import HED_FILE, HEDNet

    node = NODE_CLASS_MAPPINGS["AST_HEDPreprocessor"]
    args = {"safe": False, "resolution": 64}
    missing = node.IS_CHANGED(**args)
    assert missing == f"{HED_FILE}:-"  # no file: no error here, the run names what is missing
    folder = stub_comfy / "models" / "annotators"
    folder.mkdir(parents=True)
    path = folder / HED_FILE
    torch.manual_seed(0)
    torch.save(HEDNet().state_dict(), path)
    first = node.IS_CHANGED(**args)
    assert first != missing and str(path) in first
    assert node.IS_CHANGED(**args) == first  # unchanged: ComfyUI keeps the hint
    assert NODE_CLASS_MAPPINGS["AST_FakeScribblePreprocessor"].IS_CHANGED(resolution=64) == first  # same file
    old = node().process(image(h=40, w=56), **args)["result"][0]
    # another file of the same size given the same modification time (cp -p, rsync -t, an unpacked archive)
    stamp = path.stat().st_mtime_ns
    torch.manual_seed(1)
    staged = stub_comfy / "staging" / HED_FILE  # the same name: torch.save's archive records are named after it
    staged.parent.mkdir()
    torch.save(HEDNet().state_dict(), staged)
    assert staged.stat().st_size == path.stat().st_size
    os.replace(staged, path)
    os.utime(path, ns=(stamp, stamp))
    replaced = node.IS_CHANGED(**args)
    assert replaced != first
    new = node().process(image(h=40, w=56), **args)["result"][0]  # what ComfyUI runs once the answer changed
    assert not torch.equal(new, old)  # the new weights, not the kept network
    path.unlink()
    assert node.IS_CHANGED(**args) == missing
    annotators.clear_cache()


@pytest.mark.parametrize(
    ("node_id", "inputs", "files"),
    [
        ("AST_LineartPreprocessor", {"coarse": False}, ["sk_model.pth"]),
        ("AST_LineartPreprocessor", {"coarse": True}, ["sk_model2.pth"]),
        # ComfyUI gives a widget fed by a link as None (execution.get_input_data without outputs): both may be read
        ("AST_LineartPreprocessor", {"coarse": None}, ["sk_model.pth", "sk_model2.pth"]),
        ("AST_OpenPosePreprocessor", {"detect_hand": False, "detect_face": False}, ["body_pose_model.pth"]),
        ("AST_OpenPosePreprocessor", {"detect_hand": True, "detect_face": False}, ["body_pose_model.pth", "hand_pose_model.pth"]),
        ("AST_OpenPosePreprocessor", {"detect_hand": None, "detect_face": False}, ["body_pose_model.pth", "hand_pose_model.pth"]),
        ("AST_OpenPosePreprocessor", {"detect_hand": False, "detect_face": None}, ["body_pose_model.pth", "facenet.pth"]),
        ("AST_OpenPosePreprocessor", {"detect_hand": False}, ["body_pose_model.pth", "facenet.pth"]),
        ("AST_MiDaSNormalPreprocessor", {"a": 6.28}, ["dpt_hybrid-midas-501f0c75.pt"]),
    ],
)
def test_is_changed_follows_the_files_a_run_reads(stub_comfy, node_id, inputs, files):
    answer = NODE_CLASS_MAPPINGS[node_id].IS_CHANGED(resolution=512, **inputs)
    assert answer == "|".join(f"{f}:-" for f in files)


def test_every_learned_node_names_official_files():
    from affordance.preprocessors.weights import ANNOTATOR_FILES

    for node_id in LEARNED:
        files = NODE_CLASS_MAPPINGS[node_id].FILES
        assert files and set(files) <= set(ANNOTATOR_FILES), node_id


@pytest.mark.parametrize(
    ("node_id", "kwargs", "files"),
    [
        ("AST_LineartPreprocessor", {"coarse": False}, ["sk_model.pth"]),
        ("AST_LineartPreprocessor", {"coarse": True}, ["sk_model2.pth"]),
        ("AST_LineartAnimePreprocessor", {}, ["netG.pth"]),
    ],
)
def test_lineart_nodes_use_their_official_files(stub_comfy, image, node_id, kwargs, files):
    from affordance.nodes import annotators
    from affordance.preprocessors.lineart import LineartNet
    from affordance.preprocessors.lineart_anime import LineartAnimeNet

    annotators.clear_cache()
    folder = stub_comfy / "models" / "annotators"
    folder.mkdir(parents=True)
    net = LineartAnimeNet() if node_id == "AST_LineartAnimePreprocessor" else LineartNet()
    torch.save(net.state_dict(), folder / files[0])
    (out,) = NODE_CLASS_MAPPINGS[node_id]().process(image(h=40, w=56), resolution=64, **kwargs)["result"]
    assert out.shape == (1, 40, 56, 3)
    annotators.clear_cache()


def test_openpose_node_outputs_hint_and_keypoints(stub_comfy, image):
    from affordance.nodes import annotators
    from affordance.preprocessors.openpose import BODY_FILE, BodyPoseNet

    annotators.clear_cache()
    folder = stub_comfy / "models" / "annotators"
    folder.mkdir(parents=True)
    torch.save(BodyPoseNet().state_dict(), folder / BODY_FILE)
    node = NODE_CLASS_MAPPINGS["AST_OpenPosePreprocessor"]
    assert node.RETURN_TYPES == ("IMAGE", "POSE_KEYPOINT")
    hint, keypoints = node().process(image(b=2, h=64, w=64), True, False, False, 64)["result"]
    assert hint.shape == (2, 64, 64, 3) and len(keypoints) == 2
    assert {"people", "canvas_width", "canvas_height"} <= set(keypoints[0])
    with pytest.raises(ValueError, match="hand_pose_model.pth"):
        node().process(image(), True, True, False, 64)
    annotators.clear_cache()


@pytest.mark.parametrize(("hand", "face"), [(True, True), (True, False), (False, True), (False, False)])
def test_openpose_node_gives_each_network_its_place(monkeypatch, image, hand, face):
    """The body, hand and face networks reach the detector in that order, each only when asked for."""
    from affordance.nodes import preprocess_learned as learned
    from affordance.preprocessors.openpose import BODY_FILE, FACE_FILE, HAND_FILE

    monkeypatch.setattr(learned, "annotator_model", lambda name, build, owner: (name, build.__name__))
    seen = []

    def spy(x, body, hand_net, face_net, detect_body, detect_hand, detect_face, resolution):
        seen.append((body, hand_net, face_net, detect_body, detect_hand, detect_face, resolution))
        return x, [{"people": []}] * x.shape[0]

    monkeypatch.setattr(learned, "openpose", spy)
    learned.OpenPosePreprocessor().process(image(h=64, w=64), False, hand, face, 128)
    assert seen == [
        (
            (BODY_FILE, "BodyPoseNet"),
            (HAND_FILE, "HandPoseNet") if hand else None,
            (FACE_FILE, "FaceNet") if face else None,
            False,
            hand,
            face,
            128,
        )
    ]


@pytest.mark.parametrize(
    ("node_id", "kwargs"),
    [
        ("AST_HEDPreprocessor", {"safe": False}),
        ("AST_PiDiNetPreprocessor", {"safe": True}),
        ("AST_MLSDPreprocessor", {"score_threshold": 0.1, "distance_threshold": 0.1}),
        ("AST_NormalBAEPreprocessor", {}),
        ("AST_MiDaSDepthPreprocessor", {}),
        ("AST_MiDaSNormalPreprocessor", {"a": 6.28, "bg_threshold": 0.1}),
    ],
)
def test_learned_nodes_run_with_their_files(stub_comfy, image, node_id, kwargs):
    """Each runs from its official file, at the image's size, or at the detection size when output_size asks."""
    from affordance.nodes import annotators
    from affordance.preprocessors.hed import HED_FILE, HEDNet
    from affordance.preprocessors.midas import MIDAS_FILE, DPTHybridNet
    from affordance.preprocessors.mlsd import MLSD_FILE, MLSDNet
    from affordance.preprocessors.normalbae import NORMALBAE_FILE, NormalBaeNet
    from affordance.preprocessors.pidinet import PIDINET_FILE, PiDiNet

    files = {
        "AST_HEDPreprocessor": (HED_FILE, HEDNet),
        "AST_PiDiNetPreprocessor": (PIDINET_FILE, PiDiNet),
        "AST_MLSDPreprocessor": (MLSD_FILE, MLSDNet),
        "AST_NormalBAEPreprocessor": (NORMALBAE_FILE, NormalBaeNet),
        "AST_MiDaSDepthPreprocessor": (MIDAS_FILE, DPTHybridNet),
        "AST_MiDaSNormalPreprocessor": (MIDAS_FILE, DPTHybridNet),
    }
    name, build = files[node_id]
    annotators.clear_cache()
    folder = stub_comfy / "models" / "annotators"
    folder.mkdir(parents=True)
    torch.save(build().state_dict(), folder / name)
    node = NODE_CLASS_MAPPINGS[node_id]()
    (out,) = node.process(image(h=64, w=64), resolution=64, **kwargs)["result"]
    assert out.shape == (1, 64, 64, 3) and torch.isfinite(out).all()
    (out,) = node.process(image(h=48, w=80), resolution=64, output_size="detection", **kwargs)["result"]
    assert out.shape == (1, 64, 107, 3)
    (out,) = node.process(image(h=48, w=80), resolution=64, **kwargs)["result"]
    assert out.shape == (1, 48, 80, 3)
    annotators.clear_cache()


def test_preprocessor_nodes_show_their_hint(stub_comfy, image):
    """After execution the node shows its hint: PNGs in ComfyUI's temp folder, listed in the UI result."""
    temp = stub_comfy / "temp"
    result = NODE_CLASS_MAPPINGS["AST_CannyPreprocessor"]().process(
        image(b=2, h=32, w=48), low_threshold=100, high_threshold=200, resolution=64
    )
    images = result["ui"]["images"]
    assert [r["type"] for r in images] == ["temp", "temp"]
    from PIL import Image

    with Image.open(temp / images[0]["filename"]) as im:
        assert im.size == (48, 32)
    (hint,) = result["result"]
    assert hint.shape == (2, 32, 48, 3)


def test_no_preview_outside_comfyui(image):
    result = NODE_CLASS_MAPPINGS["AST_InvertHint"]().process(image=image())
    assert result["ui"] == {"images": []}


def test_shuffle_node_batch_in_chunks_equals_each_image_alone(image):
    """The node runs 16 images per call; every image, in any chunk, gets the seed's one warp."""
    from affordance.nodes.preprocess import CHUNK
    from affordance.preprocessors import shuffle

    x = torch.cat([image(h=32, w=32, seed=s) for s in range(CHUNK + 1)])
    (out,) = NODE_CLASS_MAPPINGS["AST_ShufflePreprocessor"]().process(x, seed=5, resolution=64)["result"]
    for i in (0, 3, CHUNK):
        alone = shuffle(x[i : i + 1].movedim(-1, 1), 5, 64).movedim(1, -1)
        torch.testing.assert_close(out[i : i + 1], alone, atol=0, rtol=0)


# ----- working memory of learned annotators ------------------------------------------------------------------
def _record_chunks(monkeypatch, free):
    from affordance.nodes import preprocess

    monkeypatch.setattr(preprocess, "free_memory", lambda device: free)
    sizes: list[int] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        return x

    return sizes, fn


@pytest.mark.parametrize(
    ("free", "expected"),
    [
        (None, [16, 4]),  # outside ComfyUI: the fixed chunk
        (1 << 40, [16, 4]),  # plenty: never more than CHUNK at once
        (6 * 1000 * 128 * 128, [3] * 6 + [2]),  # half of it holds three images' working memory
        (1000 * 128 * 128, [1] * 20),  # one at a time
    ],
)
def test_chunks_are_sized_to_the_free_memory(monkeypatch, free, expected):
    from affordance.nodes.preprocess import run_batched

    sizes, fn = _record_chunks(monkeypatch, free)
    out = run_batched(torch.rand(20, 96, 96, 3), fn, resolution=128, bytes_per_pixel=1000)
    assert sizes == expected and out.shape == (20, 96, 96, 3)  # detected at 128x128 px: 16384 px each


def test_an_image_that_needs_more_than_is_free_is_refused_before_running(monkeypatch):
    """NormalBAE at resolution 4096 would need ~75 GB of working memory: refused, naming it, before any work
    (a CPU server would otherwise be killed by the system and lose its queue)."""
    from affordance.nodes.preprocess_learned import NormalBAEPreprocessor

    sizes, fn = _record_chunks(monkeypatch, 8 << 30)
    with pytest.raises(ParameterError, match=r"NormalBAE at resolution 4096 processes this 96x64 image at 6144x4096 px, "
                       r"which needs about 105\.5 GiB of working memory per image, but 8\.0 GiB is free on cpu\. Lower resolution"):
        NormalBAEPreprocessor().batched(torch.rand(2, 64, 96, 3), 4096, fn)
    assert sizes == []
    NormalBAEPreprocessor().batched(torch.rand(2, 64, 96, 3), 512, fn)  # fits: runs
    assert sizes == [2]


SIMPLE_MEMORY = {  # node -> the bench's hints it runs (bench/bench_annotator_memory.py)
    "AST_CannyPreprocessor": ["canny"],
    "AST_ScribblePreprocessor": ["scribble"],
    "AST_ScribbleXDoGPreprocessor": ["scribble_xdog"],
    "AST_BinaryPreprocessor": ["binary", "binary_otsu"],
    "AST_LineartStandardPreprocessor": ["lineart_standard"],
    "AST_ShufflePreprocessor": ["shuffle"],
    "AST_TilePreprocessor": ["tile"],
    "AST_ColorPreprocessor": ["color"],
    "AST_LuminancePreprocessor": ["luminance"],
}


def test_every_preprocessor_with_a_resolution_has_the_measured_memory_estimate(repo_root):
    """Each weight-free node's WORK_BYTES_PER_PIXEL covers its recorded peak x1.25 (as the learned nodes')."""
    import re

    text = (repo_root / "bench" / "results" / "2026-12-05-cpu-preprocessor-memory.txt").read_text()
    measured = {m[0]: int(m[1]) for m in re.findall(r"^  (\w+)\s+\d+\s+x1\.25 =\s+(\d+)$", text, re.MULTILINE)}
    assert set(SIMPLE) == set(SIMPLE_MEMORY)
    for node_id, hints in SIMPLE_MEMORY.items():
        need = max(measured[h] for h in hints)
        assert NODE_CLASS_MAPPINGS[node_id].WORK_BYTES_PER_PIXEL >= need, node_id


@pytest.mark.parametrize("node_id", sorted(SIMPLE_MEMORY))
def test_a_weight_free_node_refuses_what_would_exhaust_the_cpu(monkeypatch, image, node_id):
    """Canny at resolution 4096 works on a 256x64 image at 16384x4096 px: ~2.4 GB per image, so a batch of 16
    needed ~38 GB at once and the system killed the server. Now chunks fit the free memory, and an image that
    alone needs more than is free is refused, naming the node, before any work."""
    from affordance.nodes import preprocess

    cls = NODE_CLASS_MAPPINGS[node_id]
    params = _defaults(cls) | {"resolution": 4096}
    x = image(b=2, h=16, w=64)  # detected at 16384x4096 px
    per_image = cls.WORK_BYTES_PER_PIXEL * 16384 * 4096
    calls: list[int] = []
    monkeypatch.setattr(cls, "compute", staticmethod(lambda x, *a, **kw: calls.append(x.shape[0]) or x))
    monkeypatch.setattr(preprocess, "free_memory", lambda device: per_image - 1)
    with pytest.raises(ParameterError, match=rf"{cls.LABEL} at resolution 4096 processes this 64x16 image at "
                       r"16384x4096 px, which needs about [\d.]+ GiB of working memory per image"):
        cls().process(x, **params)
    assert calls == []
    monkeypatch.setattr(preprocess, "free_memory", lambda device: 3 * per_image)  # half of it holds one image
    (out,) = cls().process(x, **params)["result"]
    assert calls == [1, 1] and out.shape == (2, 16, 64, 3)


def test_on_a_gpu_nothing_is_refused_only_chunked(monkeypatch):
    """ComfyUI's free figure on a GPU leaves out models it could unload (a constant 1 GiB under DirectML): too
    little is never a refusal there, only one image at a time."""
    from affordance.nodes import preprocess

    sizes, fn = _record_chunks(monkeypatch, 1 << 30)
    x = torch.rand(3, 3, 64, 96)
    monkeypatch.setattr(preprocess, "to_bchw", lambda image, device: x.to("meta"))  # stands for a GPU tensor
    monkeypatch.setattr(preprocess, "to_image", lambda hint: torch.zeros(hint.shape[0], 1, 1, 3))
    out = preprocess.run_batched(torch.rand(3, 64, 96, 3), fn, resolution=4096, bytes_per_pixel=4500, what="NormalBAE")
    assert sizes == [1, 1, 1] and out.shape[0] == 3


def test_resize_hint_checks_the_memory_its_output_and_work_need(monkeypatch):
    """Resize Hint goes up to 16384 x 16384 px (3 GiB per image as an IMAGE): a batch the free memory cannot hold
    is refused before any work, and the images are resized in chunks that fit."""
    from affordance.nodes import preprocess

    sizes: list[int] = []
    real = preprocess.resize_hint

    def counting(x, width, height, mode):
        sizes.append(x.shape[0])
        return real(x, width, height, mode)

    monkeypatch.setattr(preprocess, "resize_hint", counting)
    work = 40 * 64 * 64 + 21 * 20 * 30  # per output pixel and per input pixel
    monkeypatch.setattr(preprocess, "free_memory", lambda device: 3 * work * 2)  # three images' work, twice
    node = preprocess.HintResize()
    out = node.process(torch.rand(7, 20, 30, 3), "crop_and_resize", 64, 64)["result"][0]
    assert out.shape == (7, 64, 64, 3) and sizes == [3, 3, 1]
    # a large input shrunk to a small output needs memory for its input pixels (telling its kind, an inpaint
    # mask): sized by the output alone, all four would have run at once
    sizes.clear()
    monkeypatch.setattr(preprocess, "free_memory", lambda device: 2 * (40 * 16 * 16 + 21 * 512 * 512))
    node.process(torch.rand(4, 512, 512, 3), "just_resize", 16, 16)
    assert sizes == [1, 1, 1, 1]
    monkeypatch.setattr(preprocess, "free_memory", lambda device: 8 << 30)
    sizes.clear()
    with pytest.raises(ParameterError, match=r"Resize Hint: 8 hint\(s\) of 16384x16384 px take about 48\.0 GiB"):
        node.process(torch.rand(8, 20, 30, 3), "just_resize", 16384, 16384)
    assert sizes == []


def test_resize_hint_refusal_names_the_input_when_the_input_is_what_does_not_fit(monkeypatch):
    """A 4096 x 4096 input shrunk to 512 x 512 with 300 MiB free: the input's own share (336 MiB) is what does
    not fit. The refusal said "makes 0 megapixel images, which needs about 0.3 GiB ... but 0.3 GiB is free" and
    advised a smaller size, which would not have helped."""
    from affordance.nodes import preprocess

    monkeypatch.setattr(preprocess, "free_memory", lambda device: 300 << 20)
    with pytest.raises(ParameterError) as caught:
        preprocess.HintResize().process(torch.zeros(1, 4096, 4096, 3), "just_resize", 512, 512)
    assert str(caught.value) == (
        "Resize Hint makes images of 0.26 megapixels from this 4096x4096 image, which needs about 346 MiB of working "
        "memory per image, but 300 MiB is free on cpu. The input image takes 336 MiB of it: scale it down first "
        "(e.g. with ComfyUI's Upscale Image node), or free memory."
    )
    # the output is what is large: a smaller size is the advice
    monkeypatch.setattr(preprocess, "free_memory", lambda device: 40 * 4096 * 4096 - 1)
    with pytest.raises(ParameterError, match=r"^Resize Hint makes images of 17 megapixels, which needs about 641 MiB of "
                       r"working memory per image, but 639 MiB is free on cpu\. Choose a smaller size, or free memory\.$"):
        preprocess.HintResize().process(torch.zeros(1, 8, 8, 3), "just_resize", 4096, 4096)


def test_memory_figures_in_messages_round_the_need_up_and_the_free_memory_down():
    from affordance.nodes.preprocess import need_and_free

    gib, mib = 1 << 30, 1 << 20
    assert need_and_free(1.04 * gib, 1.0 * gib) == ("1.1 GiB", "1.0 GiB")
    assert need_and_free(1.0 * gib, 1.0 * gib - 1) == ("1.0 GiB", "1023 MiB")
    assert need_and_free(300.2 * mib, 300 * mib) == ("301 MiB", "300 MiB")
    assert need_and_free(10, 0) == ("1 MiB", "less than 1 MiB")  # never "0.0 GiB" beside "0.0 GiB"


# ----- output_size: the hint at the image's size or at the detection size ------------------------------------
def test_every_node_with_a_resolution_offers_output_size_as_an_optional_widget():
    """Optional (appended after the saved widgets), default 'image': workflows saved before it load unchanged."""
    for node_id, (cls, _) in NODES.items():
        spec = cls.INPUT_TYPES()
        if "resolution" in spec["required"]:
            assert "output_size" not in spec["required"], node_id
            kinds, opts = spec["optional"]["output_size"]
            assert kinds == ["image", "detection"] and opts["default"] == "image", node_id
        else:
            assert "output_size" not in spec.get("optional", {}), node_id


@pytest.mark.parametrize("node_id", SIMPLE)
def test_detection_output_size_is_the_image_size_output_before_it_is_resized(node_id, image):
    """'detection' returns the hint the node computes at the detection resolution; 'image' is that hint brought
    back to the input's size (the preprocessors' contract), so the two agree wherever nothing is thresholded."""
    from affordance.preprocessors.base import detection_size
    from affordance.preprocessors.filters import resize

    cls = NODES[node_id][0]
    params = _defaults(cls) | {"resolution": 128}
    x = image(b=2, h=72, w=40)
    (small,) = cls().process(x, **params)["result"]
    (big,) = cls().process(x, output_size="detection", **params)["result"]
    dh, dw = detection_size(72, 40, 128)
    assert small.shape == (2, 72, 40, 3) and big.shape == (2, dh, dw, 3) == (2, 230, 128, 3)
    back = resize(big.movedim(-1, 1), 72, 40).clamp(0, 1).movedim(1, -1)
    binary = bool(((big == 0) | (big == 1)).all())
    if not binary:
        torch.testing.assert_close(small, back, atol=1e-5, rtol=0)
    with pytest.raises(ParameterError, match="output_size must be one of \\['image', 'detection'\\], got 'latent'"):
        cls().process(x, output_size="latent", **params)


def test_pixel_perfect_with_detection_output_keeps_one_pixel_lines(image):
    """A 512 px photo generated at 1024 px: Pixel Perfect asks for detection at 1024. At the image's size the
    Canny lines come back shrunk to 512 px (any ink kept), and the ControlNet's nearest resize doubles them; at
    the detection size they reach the ControlNet one pixel wide, as with comfyui_controlnet_aux."""
    from affordance.preprocessors.filters import resize

    yy, xx = torch.meshgrid(torch.arange(512.0), torch.arange(512.0), indexing="ij")
    disc = (((yy - 256) ** 2 + (xx - 256) ** 2) < 180**2).float()
    photo = (0.2 + 0.6 * disc)[None, :, :, None].expand(1, -1, -1, 3)
    (res,) = NODE_CLASS_MAPPINGS["AST_PixelPerfectResolution"]().process(photo, "crop_and_resize", 1024, 1024)
    assert res == 1024
    node = NODE_CLASS_MAPPINGS["AST_CannyPreprocessor"]()
    (at_image,) = node.process(photo, low_threshold=100, high_threshold=200, resolution=res)["result"]
    (at_detection,) = node.process(
        photo, low_threshold=100, high_threshold=200, resolution=res, output_size="detection"
    )["result"]
    assert at_detection.shape == (1, 1024, 1024, 3)
    as_the_controlnet_sees_it = resize(at_image.movedim(-1, 1), 1024, 1024, smooth=False)  # ComfyUI: nearest-exact
    thin, thick = at_detection.mean(), as_the_controlnet_sees_it.mean()
    assert thick > 1.8 * thin  # the circle's outline is twice as wide through the image-size hint


def test_learned_node_detection_output_and_keypoint_canvas(stub_comfy, image):
    """OpenPose at the detection size: the hint and the keypoints' canvas are both that size."""
    from affordance.nodes import annotators
    from affordance.preprocessors.openpose import BODY_FILE, BodyPoseNet

    annotators.clear_cache()
    folder = stub_comfy / "models" / "annotators"
    folder.mkdir(parents=True)
    torch.save(BodyPoseNet().state_dict(), folder / BODY_FILE)
    node = NODE_CLASS_MAPPINGS["AST_OpenPosePreprocessor"]()
    hint, keypoints = node.process(image(b=1, h=48, w=80), True, False, False, 64, output_size="detection")["result"]
    assert hint.shape == (1, 64, 107, 3)
    assert (keypoints[0]["canvas_height"], keypoints[0]["canvas_width"]) == (64, 107)
    hint, keypoints = node.process(image(b=1, h=48, w=80), True, False, False, 64)["result"]
    assert hint.shape == (1, 48, 80, 3) and (keypoints[0]["canvas_height"], keypoints[0]["canvas_width"]) == (48, 80)
    annotators.clear_cache()


def test_detection_output_that_cannot_fit_is_refused_before_any_work(monkeypatch, image):
    """At the detection size a hint can be (4096 / short side)^2 times its input: 32 frames of 256 px at 2048 are
    1.5 GiB as an IMAGE (twice while joined). It ran into whatever memory there was; at the image's size it fits."""
    from affordance.nodes import preprocess

    calls: list[int] = []
    real = preprocess.color_grid

    def counting(x, resolution):
        calls.append(x.shape[0])
        return real(x, resolution)

    monkeypatch.setattr(preprocess, "color_grid", counting)
    monkeypatch.setattr(preprocess, "free_memory", lambda device: 2 << 30)
    node = NODE_CLASS_MAPPINGS["AST_ColorPreprocessor"]()
    frames = torch.rand(32, 256, 256, 3)
    with pytest.raises(ParameterError, match=r"32 hint\(s\) at the detection size 2048x2048 px take about 3\.0 GiB"):
        node.process(frames, resolution=2048, output_size="detection")
    assert calls == []
    with pytest.raises(ParameterError, match="resolution must be an integer between 8 and 4096, got 8192"):
        node.process(frames[:1], resolution=8192, output_size="detection")  # a linked value, unchecked by ComfyUI
    assert calls == []
    # a wide image's detection size follows both of its sides: 128x512 at 512 is 2048x512 (24 MiB as an IMAGE)
    monkeypatch.setattr(preprocess, "free_memory", lambda device: 16 << 20)
    with pytest.raises(ParameterError, match=r"1 hint\(s\) at the detection size 2048x512 px take about 24 MiB"):
        node.process(torch.rand(1, 128, 512, 3), resolution=512, output_size="detection")
    assert calls == []
    monkeypatch.setattr(preprocess, "free_memory", lambda device: 64 << 30)
    assert node.process(frames[:2], resolution=256, output_size="detection")["result"][0].shape == (2, 256, 256, 3)


def test_resize_memory_figures_cover_the_recorded_bench():
    """The guard's figures are at least the peaks bench_resize_memory.py recorded, with a quarter more."""
    import pathlib
    import re

    from affordance.nodes.preprocess import RESIZE_BYTES_PER_PIXEL, RESIZE_INPUT_BYTES_PER_PIXEL

    text = (pathlib.Path(__file__).parents[3] / "bench/results/2026-12-05-cpu-resize-memory.txt").read_text()
    rows = re.findall(r"^\w+\s+\d+->\d+\s+\d+\s+([\d.]+)\s+(output|input)", text, re.MULTILINE)
    assert len(rows) == 8
    assert RESIZE_BYTES_PER_PIXEL >= 1.25 * max(float(v) for v, per in rows if per == "output")
    assert RESIZE_INPUT_BYTES_PER_PIXEL >= 1.25 * max(float(v) for v, per in rows if per == "input")


def test_inpaint_node_runs_in_chunks_with_each_images_mask(image, monkeypatch):
    """A batch larger than a chunk: each image gets its own mask row (or the one mask), with a progress bar."""
    from affordance.nodes import preprocess
    from affordance.nodes.preprocess import CHUNK

    ticks: list[int] = []
    monkeypatch.setattr(preprocess.Progress, "update", lambda self, n: ticks.append(n))
    b = CHUNK + 3
    x = torch.cat([image(h=16, w=24, seed=s) for s in range(b)])
    masks = torch.zeros(b, 16, 24)
    for i in range(b):
        masks[i, :, i] = 1  # image i is masked in column i only
    (hint,) = NODE_CLASS_MAPPINGS["AST_InpaintPreprocessor"]().process(x, masks)["result"]
    assert ticks == [CHUNK, 3]
    for i in range(b):
        assert torch.all(hint[i, :, i] == -1) and torch.equal(hint[i, :, i + 1 :], x[i, :, i + 1 :]), i
    (one,) = NODE_CLASS_MAPPINGS["AST_InpaintPreprocessor"]().process(x, masks[5:6])["result"]
    assert torch.all(one[:, :, 5] == -1) and torch.equal(one[:, :, 6:], x[:, :, 6:])
    with pytest.raises(ValueError, match=f"a batch of 2 masks does not fit {b} image"):
        NODE_CLASS_MAPPINGS["AST_InpaintPreprocessor"]().process(x, masks[:2])


def test_inpaint_node_chunks_fit_the_free_memory(image, monkeypatch):
    from affordance.nodes import preprocess

    monkeypatch.setattr(preprocess, "free_memory", lambda device: 4 * 75 * 16 * 24)  # half holds two images
    seen: list[int] = []
    real = preprocess.inpaint
    monkeypatch.setattr(preprocess, "inpaint", lambda x, m: (seen.append(x.shape[0]), real(x, m))[1])
    x = torch.cat([image(h=16, w=24, seed=s) for s in range(5)])
    NODE_CLASS_MAPPINGS["AST_InpaintPreprocessor"]().process(x, torch.ones(1, 16, 24))
    assert seen == [2, 2, 1]
    monkeypatch.setattr(preprocess, "free_memory", lambda device: 70 * 16 * 24)
    with pytest.raises(ParameterError, match="Inpaint Hint"):
        NODE_CLASS_MAPPINGS["AST_InpaintPreprocessor"]().process(x, torch.ones(1, 16, 24))


@pytest.mark.parametrize("node_id", SIMPLE)
def test_a_node_never_changes_its_input_image(node_id):
    """The IMAGE is another node's cached output, also when it is already at the detection size (nothing to
    resize): values above 1 (an unclamped upscale's overshoot) reach other nodes unchanged."""
    cls = NODES[node_id][0]
    img = torch.rand(1, 128, 96, 3, generator=torch.Generator().manual_seed(0)) * 1.2
    before = img.clone()
    getattr(cls(), cls.FUNCTION)(img, **(_defaults(cls) | {"resolution": 96}))
    assert torch.equal(img, before)


def _ranged(cls) -> dict[str, dict]:
    """The node's INT/FLOAT widgets with a min and max (image sizes and the resolution excluded: their maximum
    would mean a huge image), by name."""
    spec = cls.INPUT_TYPES()
    widgets = {**spec["required"], **spec.get("optional", {})}
    return {
        name: opts
        for name, (kind, *rest) in widgets.items()
        for opts in rest[:1]
        if kind in ("INT", "FLOAT") and "min" in opts and name not in ("resolution", "width", "height")
    }


RANGED = sorted(k for k, cls in NODE_CLASS_MAPPINGS.items() if (k in NODES or k in LEARNED) and _ranged(cls))


def test_the_ranged_widgets_cover_the_preprocessors_with_settings():
    assert set(RANGED) >= {
        "AST_CannyPreprocessor",
        "AST_LineartStandardPreprocessor",
        "AST_LuminancePreprocessor",
        "AST_MLSDPreprocessor",
        "AST_MiDaSNormalPreprocessor",
        "AST_ShufflePreprocessor",
        "AST_TilePreprocessor",
    }


@pytest.mark.parametrize("end", ["min", "max"])
@pytest.mark.parametrize("node_id", RANGED)
def test_every_value_a_widget_offers_is_accepted(node_id, end, image, monkeypatch):
    """The ends of each widget's range (all at once, with the smallest resolution) pass VALIDATE_INPUTS and
    run: a function whose own check were narrower than its widget would refuse a value the user was offered
    (a linked value skips ComfyUI's min/max check, so ours is the one that counts)."""
    from affordance.nodes import annotators, preprocess_learned

    cls = NODE_CLASS_MAPPINGS[node_id]
    kwargs = _defaults(cls) | {name: opts[end] for name, opts in _ranged(cls).items()} | {"resolution": 64}
    if hasattr(cls, "VALIDATE_INPUTS"):
        asked = inspect.signature(cls.VALIDATE_INPUTS).parameters
        assert cls.VALIDATE_INPUTS(**{k: v for k, v in kwargs.items() if k in asked}) is True
    if node_id in LEARNED:  # random networks of the official layouts: the settings act after the network
        built: dict = {}
        monkeypatch.setattr(
            preprocess_learned, "annotator_model", lambda name, build, node: built.setdefault(name, build().eval())
        )
        annotators.clear_cache()
    (out,) = getattr(cls(), cls.FUNCTION)(image(h=40, w=56), **kwargs)["result"]
    assert out.shape == (1, 40, 56, 3) and torch.isfinite(out).all() and 0 <= out.min() <= out.max() <= 1
