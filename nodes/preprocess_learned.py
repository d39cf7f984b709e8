"""Preprocessor nodes with learned annotators: the official weights from ComfyUI/models/annotators, loaded once
(``annotators.py``), batched on ComfyUI's device through the shared base of ``preprocess.py``."""

from __future__ import annotations

from typing import Any

import torch

from ..preprocessors.hed import HED_FILE, HEDNet, fake_scribble, hed
from ..preprocessors.lineart import LINEART_COARSE_FILE, LINEART_FILE, LineartNet, lineart
from ..preprocessors.lineart_anime import LINEART_ANIME_FILE, LineartAnimeNet, lineart_anime
from ..preprocessors.midas import MIDAS_FILE, DPTHybridNet, midas_depth, midas_normal
from ..preprocessors.mlsd import MLSD_FILE, MLSDNet, mlsd
from ..preprocessors.normalbae import NORMALBAE_FILE, NormalBaeNet, normal_bae
from ..preprocessors.openpose import BODY_FILE, FACE_FILE, HAND_FILE, BodyPoseNet, FaceNet, HandPoseNet, openpose
from ..preprocessors.pidinet import PIDINET_FILE, PiDiNet, pidinet
from .annotators import annotator_fingerprint, annotator_model
from .preprocess import _float, _Preprocessor, with_preview


class _Learned(_Preprocessor):
    """A node with a learned annotator: its chunks are sized to the memory free (see :func:`run_batched`).

    ``WORK_BYTES_PER_PIXEL``: the annotator's peak working memory per pixel it processes, fp32 on the CPU
    (``bench/bench_annotator_memory.py``; bench/results/2026-12-05-cpu-annotator-memory.txt), with a quarter
    more as margin. fp16 on a GPU needs less, so the estimate errs on the safe side there.
    """

    WORK_BYTES_PER_PIXEL = 4500  # the largest of the nodes below
    LABEL = "this annotator"
    FILES: tuple[str, ...] = ()  # the official weight files the node reads

    @classmethod
    def files(cls, **inputs: Any) -> tuple[str, ...]:
        """The weight files a run with these widget values reads.

        ComfyUI gives a widget fed by a link as ``None`` here (its value exists only when the node runs): every
        file it could select counts then.
        """
        return cls.FILES

    @classmethod
    def IS_CHANGED(cls, **inputs: Any) -> str:
        """The identity of those files: a file replaced on disk (or removed, or put back) runs the node again.

        ComfyUI otherwise keeps the node's output while its inputs are the same, so the same prompt queued
        again would give the old weights' hint (or hide a removed file) until a restart.
        """
        return annotator_fingerprint(cls.files(**inputs))


class HEDPreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 1100
    LABEL = "HED"
    FILES = (HED_FILE,)
    DESCRIPTION = (
        "Soft edges with ControlNet's HED network (ControlNetHED.pth from ComfyUI/models/annotators), batched on the "
        "GPU, loaded once and kept warm while the node is in use."
    )
    PARAMS = {"safe": ("BOOLEAN", {"default": False, "tooltip": "Quantise edges to 3 levels (hides textures)."})}

    def process(self, image: torch.Tensor, safe: bool, resolution: int, output_size: str = "image") -> dict:
        net = annotator_model(HED_FILE, HEDNet, self)
        return with_preview(
            self.batched(image, resolution, output_size=output_size, fn=lambda x: hed(x, net, safe, resolution))
        )


class FakeScribblePreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 1100
    LABEL = "Fake Scribble (HED)"
    FILES = (HED_FILE,)
    DESCRIPTION = (
        "ControlNet 1.0's fake scribble: HED edges thinned and thresholded into bold strokes (ControlNetHED.pth)."
    )

    def process(self, image: torch.Tensor, resolution: int, output_size: str = "image") -> dict:
        net = annotator_model(HED_FILE, HEDNet, self)
        return with_preview(
            self.batched(image, resolution, output_size=output_size, fn=lambda x: fake_scribble(x, net, resolution))
        )


class LineartPreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 1800
    LABEL = "Lineart"
    FILES = (LINEART_FILE, LINEART_COARSE_FILE)
    DESCRIPTION = (
        "Lineart with the Informative Drawings generator (sk_model.pth; coarse: sk_model2.pth), white on black."
    )
    PARAMS = {
        "coarse": (
            "BOOLEAN",
            {
                "default": False,
                "tooltip": "Use the coarse model (sk_model2.pth) for bolder, simpler lines; off uses the fine model "
                "(sk_model.pth).",
            },
        )
    }

    @classmethod
    def files(cls, coarse: Any = None, **inputs: Any) -> tuple[str, ...]:
        return cls.FILES if coarse is None else (LINEART_COARSE_FILE if coarse else LINEART_FILE,)

    def process(self, image: torch.Tensor, coarse: bool, resolution: int, output_size: str = "image") -> dict:
        net = annotator_model(LINEART_COARSE_FILE if coarse else LINEART_FILE, LineartNet, self)
        return with_preview(
            self.batched(image, resolution, output_size=output_size, fn=lambda x: lineart(x, net, resolution))
        )


class LineartAnimePreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 900
    LABEL = "Lineart Anime"
    FILES = (LINEART_ANIME_FILE,)
    DESCRIPTION = "Anime lineart with the anime U-Net (netG.pth); the network runs at the next multiple of 256."

    def process(self, image: torch.Tensor, resolution: int, output_size: str = "image") -> dict:
        net = annotator_model(LINEART_ANIME_FILE, LineartAnimeNet, self)
        return with_preview(
            self.batched(image, resolution, output_size=output_size, fn=lambda x: lineart_anime(x, net, resolution))
        )


class NormalBAEPreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 4500
    LABEL = "NormalBAE"
    FILES = (NORMALBAE_FILE,)
    DESCRIPTION = (
        "Surface normals with Bae et al.'s estimator (scannet.pt), as ControlNet 1.1's normalbae model expects."
    )

    def process(self, image: torch.Tensor, resolution: int, output_size: str = "image") -> dict:
        net = annotator_model(NORMALBAE_FILE, NormalBaeNet, self)
        return with_preview(
            self.batched(image, resolution, output_size=output_size, fn=lambda x: normal_bae(x, net, resolution))
        )


class MiDaSDepthPreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 2400
    LABEL = "MiDaS depth"
    FILES = (MIDAS_FILE,)
    DESCRIPTION = (
        "Depth with MiDaS v3 DPT-Hybrid (dpt_hybrid-midas-501f0c75.pt, the file ControlNet's depth models used)."
    )

    def process(self, image: torch.Tensor, resolution: int, output_size: str = "image") -> dict:
        net = annotator_model(MIDAS_FILE, DPTHybridNet, self)
        return with_preview(
            self.batched(image, resolution, output_size=output_size, fn=lambda x: midas_depth(x, net, resolution))
        )


class MiDaSNormalPreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 2400
    LABEL = "MiDaS normal"
    FILES = (MIDAS_FILE,)
    DESCRIPTION = "Normals from MiDaS depth, as ControlNet 1.0's normal model expects (dpt_hybrid-midas-501f0c75.pt)."
    PARAMS = {
        "a": _float(
            6.28,
            0.0,
            15.7,
            0.01,
            "Strength of the flat 'facing the camera' component against the depth gradients; larger gives flatter "
            "normals (2 pi by default).",
        ),
        "bg_threshold": _float(
            0.1, 0.0, 1.0, 0.01, "Scaled depth below which pixels count as background and face the camera."
        ),
    }

    def process(
        self, image: torch.Tensor, a: float, bg_threshold: float, resolution: int, output_size: str = "image"
    ) -> dict:
        net = annotator_model(MIDAS_FILE, DPTHybridNet, self)
        return with_preview(
            self.batched(
                image,
                resolution,
                output_size=output_size,
                fn=lambda x: midas_normal(x, net, a, bg_threshold, resolution),
            )
        )


class OpenPosePreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 2100
    LABEL = "OpenPose"
    FILES = (BODY_FILE, HAND_FILE, FACE_FILE)

    DESCRIPTION = (
        "OpenPose skeletons (body_pose_model.pth; hands: hand_pose_model.pth; face: facenet.pth) for the openpose "
        "ControlNets, plus the keypoints in the OpenPose JSON format."
    )
    PARAMS = {
        "detect_body": ("BOOLEAN", {"default": True, "tooltip": "Draw the body skeletons."}),
        "detect_hand": ("BOOLEAN", {"default": False, "tooltip": "Detect and draw hands (needs hand_pose_model.pth)."}),
        "detect_face": (
            "BOOLEAN",
            {"default": False, "tooltip": "Detect and draw face landmarks (needs facenet.pth)."},
        ),
    }
    RETURN_TYPES = ("IMAGE", "POSE_KEYPOINT")
    RETURN_NAMES = ("hint", "keypoints")
    OUTPUT_TOOLTIPS = ("The rendered skeletons.", "Keypoints per image (OpenPose JSON: people, canvas size).")

    @classmethod
    def files(cls, detect_hand: Any = True, detect_face: Any = True, **inputs: Any) -> tuple[str, ...]:
        pairs = ((BODY_FILE, True), (HAND_FILE, detect_hand), (FACE_FILE, detect_face))
        return tuple(f for f, used in pairs if used is not False)  # None: fed by a link, may be on

    def process(
        self,
        image: torch.Tensor,
        detect_body: bool,
        detect_hand: bool,
        detect_face: bool,
        resolution: int,
        output_size: str = "image",
    ) -> dict:
        body = annotator_model(BODY_FILE, BodyPoseNet, self)
        hand = annotator_model(HAND_FILE, HandPoseNet, self) if detect_hand else None
        face = annotator_model(FACE_FILE, FaceNet, self) if detect_face else None
        keypoints: list = []

        def run(x: torch.Tensor) -> torch.Tensor:
            hint, kps = openpose(x, body, hand, face, detect_body, detect_hand, detect_face, resolution)
            keypoints.extend(kps)
            return hint

        hint = self.batched(image, resolution, output_size=output_size, fn=run)
        return with_preview(hint, keypoints)


class PiDiNetPreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 2000
    LABEL = "PiDiNet"
    FILES = (PIDINET_FILE,)
    DESCRIPTION = "Soft edges with PiDiNet (table5_pidinet.pth), for softedge and scribble ControlNets."
    PARAMS = {
        "safe": ("BOOLEAN", {"default": False, "tooltip": "Quantise edges to 3 levels, hiding textures (pidisafe)."}),
    }

    def process(self, image: torch.Tensor, safe: bool, resolution: int, output_size: str = "image") -> dict:
        net = annotator_model(PIDINET_FILE, PiDiNet, self)
        return with_preview(
            self.batched(image, resolution, output_size=output_size, fn=lambda x: pidinet(x, net, safe, resolution))
        )


class MLSDPreprocessor(_Learned):
    WORK_BYTES_PER_PIXEL = 1000
    LABEL = "M-LSD"
    FILES = (MLSD_FILE,)
    DESCRIPTION = "Straight lines with M-LSD large (mlsd_large_512_fp32.pth), white on black, for the mlsd ControlNet."
    PARAMS = {
        "score_threshold": _float(0.1, 0.01, 2.0, 0.01, "Minimum confidence of a line segment's centre."),
        "distance_threshold": _float(
            0.1, 0.01, 20.0, 0.01, "Minimum segment length (in half-resolution pixels); shorter segments are dropped."
        ),
    }

    def process(
        self,
        image: torch.Tensor,
        score_threshold: float,
        distance_threshold: float,
        resolution: int,
        output_size: str = "image",
    ) -> dict:
        net = annotator_model(MLSD_FILE, MLSDNet, self)
        return with_preview(
            self.batched(
                image,
                resolution,
                output_size=output_size,
                fn=lambda x: mlsd(x, net, score_threshold, distance_threshold, resolution),
            )
        )


LEARNED_NODES: dict[str, tuple[type, str]] = {
    "AST_HEDPreprocessor": (HEDPreprocessor, "HED Soft Edges (Affordance)"),
    "AST_FakeScribblePreprocessor": (FakeScribblePreprocessor, "Fake Scribble (Affordance)"),
    "AST_LineartPreprocessor": (LineartPreprocessor, "Lineart (Affordance)"),
    "AST_LineartAnimePreprocessor": (LineartAnimePreprocessor, "Lineart Anime (Affordance)"),
    "AST_NormalBAEPreprocessor": (NormalBAEPreprocessor, "NormalBAE Normals (Affordance)"),
    "AST_MiDaSDepthPreprocessor": (MiDaSDepthPreprocessor, "MiDaS Depth (Affordance)"),
    "AST_MiDaSNormalPreprocessor": (MiDaSNormalPreprocessor, "MiDaS Normals (Affordance)"),
    "AST_OpenPosePreprocessor": (OpenPosePreprocessor, "OpenPose (Affordance)"),
    "AST_PiDiNetPreprocessor": (PiDiNetPreprocessor, "PiDiNet Soft Edges (Affordance)"),
    "AST_MLSDPreprocessor": (MLSDPreprocessor, "M-LSD Lines (Affordance)"),
}
