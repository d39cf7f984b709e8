"""Every preprocessor node runs inside the real ComfyUI (its folder_paths and model management) and its
hint feeds AST_ApplyControlNet in a sampling run that it visibly steers."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.comfy


def _he(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(net.state_dict(keep_vars=True).items()):
            if p.is_floating_point():
                fan_in = p[0].numel() if p.ndim > 1 else 0
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 * (2.0 / fan_in) ** 0.5 if fan_in else 0.05))
                if name.endswith("running_var"):
                    p.abs_().add_(0.5)
    return net


@pytest.fixture(scope="module")
def annotator_folder(comfy, comfy_nodes, tmp_path_factory):
    """Random-weight files under the official names, in an annotators folder registered like a user's yaml entry."""
    import folder_paths

    from affordance.nodes import annotators
    from affordance.preprocessors.hed import HED_FILE, HEDNet
    from affordance.preprocessors.lineart import LINEART_COARSE_FILE, LINEART_FILE, LineartNet
    from affordance.preprocessors.lineart_anime import LINEART_ANIME_FILE, LineartAnimeNet
    from affordance.preprocessors.midas import MIDAS_FILE, DPTHybridNet
    from affordance.preprocessors.mlsd import MLSD_FILE, MLSDNet
    from affordance.preprocessors.normalbae import NORMALBAE_FILE, NormalBaeNet
    from affordance.preprocessors.openpose import BODY_FILE, FACE_FILE, HAND_FILE, BodyPoseNet, FaceNet, HandPoseNet
    from affordance.preprocessors.pidinet import PIDINET_FILE, PiDiNet

    folder = tmp_path_factory.mktemp("annotators")
    nets = {
        HED_FILE: HEDNet,
        LINEART_FILE: LineartNet,
        LINEART_COARSE_FILE: LineartNet,
        LINEART_ANIME_FILE: LineartAnimeNet,
        MIDAS_FILE: DPTHybridNet,
        MLSD_FILE: MLSDNet,
        NORMALBAE_FILE: NormalBaeNet,
        PIDINET_FILE: PiDiNet,
        BODY_FILE: BodyPoseNet,
        HAND_FILE: HandPoseNet,
        FACE_FILE: FaceNet,
    }
    for i, (name, build) in enumerate(nets.items()):
        torch.save(_he(build(), i).state_dict(), folder / name)
    folder_paths.add_model_folder_path("annotators", str(folder))
    annotators.clear_cache()
    yield folder
    annotators.clear_cache()


CASES = {
    "AST_CannyPreprocessor": {"low_threshold": 100, "high_threshold": 200},
    "AST_ScribblePreprocessor": {},
    "AST_ScribbleXDoGPreprocessor": {"threshold": 32},
    "AST_BinaryPreprocessor": {"threshold": 0},
    "AST_LineartStandardPreprocessor": {"sigma": 6.0, "intensity": 8.0},
    "AST_ShufflePreprocessor": {"seed": 3},
    "AST_TilePreprocessor": {"pyrup_iters": 3},
    "AST_ColorPreprocessor": {},
    "AST_LuminancePreprocessor": {"gamma": 1.0},
    "AST_HEDPreprocessor": {"safe": False},
    "AST_FakeScribblePreprocessor": {},
    "AST_PiDiNetPreprocessor": {"safe": True},
    "AST_MLSDPreprocessor": {"score_threshold": 0.1, "distance_threshold": 0.1},
    "AST_LineartPreprocessor": {"coarse": True},
    "AST_LineartAnimePreprocessor": {},
    "AST_MiDaSDepthPreprocessor": {},
    "AST_MiDaSNormalPreprocessor": {"a": 6.28, "bg_threshold": 0.1},
    "AST_NormalBAEPreprocessor": {},
    "AST_OpenPosePreprocessor": {"detect_body": True, "detect_hand": True, "detect_face": True},
}


@pytest.mark.parametrize("node_id", sorted(CASES))
def test_node_feeds_apply_controlnet(node_id, annotator_folder, tiny_family, comfy_sample):
    from affordance.nodes import NODE_CLASS_MAPPINGS

    fam = tiny_family("sd15")
    photo = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(7))
    node = NODE_CLASS_MAPPINGS[node_id]()
    result = getattr(node, node.FUNCTION)(photo, resolution=64, **CASES[node_id])
    out = result["result"]
    hint = out[0]
    assert len(result["ui"]["images"]) == 1  # the hint is shown on the node
    assert hint.shape == (1, 64, 64, 3) and torch.isfinite(hint).all()
    if node_id == "AST_OpenPosePreprocessor":
        assert len(out[1]) == 1 and "people" in out[1][0]
    apply = NODE_CLASS_MAPPINGS["AST_ApplyControlNet"]()
    positive, negative = fam.conditioning(1), fam.conditioning(2)
    pos, neg = apply.apply(positive, negative, fam.our_controls[0], hint, 1.0, 0.0, 1.0)
    steered = comfy_sample(fam.patcher, pos, neg, fam.latent(), steps=2)
    plain = comfy_sample(fam.patcher, positive, negative, fam.latent(), steps=2)
    assert torch.isfinite(steered).all() and (steered - plain).abs().max() > 1e-3


def test_working_memory_is_judged_by_comfyuis_free_memory(comfy):
    """With ComfyUI's own free-memory figure: an image whose working memory exceeds it is refused before any
    work, and a batch is cut into chunks that fit half of it."""
    import comfy.model_management as mm

    from affordance.nodes.preprocess_learned import NormalBAEPreprocessor
    from affordance.preprocessors import ParameterError
    from affordance.preprocessors.base import MAX_DETECTION_SIDE

    free = mm.get_free_memory(mm.get_torch_device())
    calls: list[int] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x

    node = NormalBAEPreprocessor()
    side = 64 * int((2 * free / node.WORK_BYTES_PER_PIXEL) ** 0.5 // 64 + 1)  # twice the free memory
    if side > MAX_DETECTION_SIDE:
        pytest.skip(f"{free / 2**30:.0f} GiB free: no image the nodes accept needs more than that")
    with pytest.raises(ParameterError, match=rf"NormalBAE at resolution {side} .* GiB is free on"):
        node.batched(torch.rand(1, 64, 64, 3), side, fn)
    assert calls == []
    node.batched(torch.rand(3, 64, 64, 3), 64, fn)
    assert calls == [3]


def test_annotator_files_in_sub_folders_are_found(comfy, tmp_path, monkeypatch):
    """With ComfyUI's own folder_paths: a folder laid out as comfyui_controlnet_aux downloads its files
    (ckpts/lllyasviel/Annotators/<name>) can be registered as it is; a file directly in a registered folder
    wins, then the least nested; a file in none is named with the folders searched."""
    import folder_paths

    from affordance.nodes import annotators
    from affordance.preprocessors.weights import AnnotatorWeightsError

    ckpts = tmp_path / "ckpts"
    deep = ckpts / "lllyasviel" / "Annotators"
    deeper = ckpts / "other" / "copies" / "old"
    for folder in (deep, deeper):
        folder.mkdir(parents=True)
        (folder / "ControlNetHED.pth").write_bytes(b"x")
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "annotators", ([str(ckpts)], set()))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    assert annotators.annotator_path("ControlNetHED.pth") == str(deep / "ControlNetHED.pth")
    (ckpts / "ControlNetHED.pth").write_bytes(b"x")
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    assert annotators.annotator_path("ControlNetHED.pth") == str(ckpts / "ControlNetHED.pth")
    with pytest.raises(AnnotatorWeightsError, match=r"'table5_pidinet.pth' .*not found in .*ckpts \(and its sub-folders\)"):
        annotators.annotator_path("table5_pidinet.pth")


def test_comfyuis_executor_runs_the_node_again_when_its_file_is_replaced(comfy, comfy_nodes, tmp_path, monkeypatch):
    """The same prompt queued again is served from ComfyUI's cache, unless the annotator file changed on disk:
    then the node runs again with the new weights (ComfyUI's own PromptExecutor, its IS_CHANGED handling)."""
    import asyncio
    import copy
    import inspect
    import os

    import execution
    import folder_paths

    from affordance.nodes import NODE_CLASS_MAPPINGS, annotators
    from affordance.nodes.preprocess_learned import HEDPreprocessor
    from affordance.preprocessors.hed import HED_FILE, HEDNet

    class Server:  # what the executor reports progress to
        client_id = None
        last_node_id = None
        last_prompt_id = None

        def send_sync(self, *args, **kwargs):
            pass

    folder = tmp_path / "annotators"
    folder.mkdir()
    torch.save(_he(HEDNet(), 1).state_dict(), folder / HED_FILE)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "annotators", ([str(folder)], {".pth"}))
    monkeypatch.setitem(comfy_nodes.NODE_CLASS_MAPPINGS, "AST_HEDPreprocessor", NODE_CLASS_MAPPINGS["AST_HEDPreprocessor"])
    hints = []
    process = HEDPreprocessor.process

    def recording(self, *args, **kwargs):
        out = process(self, *args, **kwargs)
        hints.append(out["result"][0])
        return out

    monkeypatch.setattr(HEDPreprocessor, "process", recording)
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x8040C0}},
        "2": {"class_type": "AST_HEDPreprocessor", "inputs": {"image": ["1", 0], "safe": False, "resolution": 64}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    # as main.py makes it: ComfyUI 0.24 reads cache_args["ram"] at every prompt (0: no RAM-pressure limits)
    params = inspect.signature(execution.PromptExecutor).parameters
    kwargs = {"cache_args": {"lru": 0, "ram": 0, "ram_inactive": 0}} if "cache_args" in params else {}
    executor = execution.PromptExecutor(Server(), **kwargs)
    annotators.clear_cache()
    try:

        def queue(n: int) -> None:
            # a fresh copy, as the server makes one per queued prompt (the executor notes IS_CHANGED in it)
            asyncio.run(executor.execute_async(copy.deepcopy(prompt), f"p{n}", {}, ["3"]))
            assert executor.success, executor.status_messages

        queue(1)
        queue(2)
        assert len(hints) == 1  # unchanged: ComfyUI serves the hint from its cache
        stamp = (folder / HED_FILE).stat().st_mtime_ns
        torch.save(_he(HEDNet(), 2).state_dict(), folder / "new.pth")
        os.replace(folder / "new.pth", folder / HED_FILE)
        os.utime(folder / HED_FILE, ns=(stamp, stamp))  # even with the old modification time (cp -p)
        queue(3)
        assert len(hints) == 2 and not torch.equal(hints[0], hints[1])  # run again, with the new weights
    finally:
        annotators.clear_cache()


@pytest.mark.parametrize("node_id", sorted(CASES))
def test_detection_output_size_in_comfyui(node_id, annotator_folder):
    """output_size 'detection' (what Pixel Perfect Resolution needs): every node, learned ones through ComfyUI's
    model management, returns its hint at the detection size; OpenPose's keypoint canvas follows."""
    from affordance.nodes import NODE_CLASS_MAPPINGS
    from affordance.preprocessors.base import detection_size

    photo = torch.rand(1, 48, 80, 3, generator=torch.Generator().manual_seed(7))
    node = NODE_CLASS_MAPPINGS[node_id]()
    out = getattr(node, node.FUNCTION)(photo, resolution=64, output_size="detection", **CASES[node_id])["result"]
    dh, dw = detection_size(48, 80, 64)
    assert out[0].shape == (1, dh, dw, 3) == (1, 64, 107, 3) and torch.isfinite(out[0]).all()
    if node_id == "AST_OpenPosePreprocessor":
        assert (out[1][0]["canvas_height"], out[1][0]["canvas_width"]) == (dh, dw)
