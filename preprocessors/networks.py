"""Which network reads which official annotator file (a name -> constructor table, for checks and tools).

Each constructor builds the network with random weights in the official file's exact layout; load the
file into it with :func:`.weights.load_annotator`. The nodes build their networks themselves; this table
serves the whole-folder check (``python -m affordance annotators``) and tests with real files.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .hed import HEDNet
from .lineart import LineartNet
from .lineart_anime import LineartAnimeNet
from .midas import DPTHybridNet
from .mlsd import MLSDNet
from .normalbae import NormalBaeNet
from .openpose import BodyPoseNet, FaceNet, HandPoseNet
from .pidinet import PiDiNet

NETWORK_FOR_FILE: dict[str, Callable[[], nn.Module]] = {
    "ControlNetHED.pth": HEDNet,
    "table5_pidinet.pth": PiDiNet,
    "mlsd_large_512_fp32.pth": MLSDNet,
    "sk_model.pth": LineartNet,
    "sk_model2.pth": LineartNet,
    "netG.pth": LineartAnimeNet,
    "dpt_hybrid-midas-501f0c75.pt": DPTHybridNet,
    "scannet.pt": NormalBaeNet,
    "body_pose_model.pth": BodyPoseNet,
    "hand_pose_model.pth": HandPoseNet,
    "facenet.pth": FaceNet,
}
