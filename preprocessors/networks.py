"""Which network reads which official annotator file (a name -> constructor table, for checks and tools).

Each constructor builds the network with random weights in the official file's exact layout; load the
file into it with :func:`.weights.load_annotator`. The nodes build their networks themselves; these tables
serve the whole-folder check (``python -m affordance annotators``), the command line's learned hints
(``python -m affordance hints --annotators FOLDER``) and tests with real files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .hed import HED_FILE, HEDNet, fake_scribble, hed
from .lineart import LINEART_COARSE_FILE, LINEART_FILE, LineartNet, lineart
from .lineart_anime import LINEART_ANIME_FILE, LineartAnimeNet, lineart_anime
from .midas import MIDAS_FILE, DPTHybridNet, midas_depth, midas_normal
from .mlsd import MLSD_FILE, MLSDNet, mlsd
from .normalbae import NORMALBAE_FILE, NormalBaeNet, normal_bae
from .openpose import BODY_FILE, FACE_FILE, HAND_FILE, BodyPoseNet, FaceNet, HandPoseNet, openpose
from .pidinet import PIDINET_FILE, PiDiNet, pidinet

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


# A learned hint: the files it reads (in this order) and ``run(image, networks, resolution)``, where
# ``image`` is ``(B, 3, H, W)`` float in ``[0, 1]``, ``networks`` the loaded networks of those files (each of
# the class ``NETWORK_FOR_FILE`` names for it, hence ``Any``), and the result a ``(B, 3, H, W)`` hint in
# ``[0, 1]``. Every learned preprocessor node's defaults, by hint name.
LearnedHint = tuple[tuple[str, ...], Callable[[torch.Tensor, Sequence[Any], int], torch.Tensor]]
LEARNED_GALLERY: dict[str, LearnedHint] = {
    "hed": ((HED_FILE,), lambda x, n, r: hed(x, n[0], False, r)),
    "fake_scribble": ((HED_FILE,), lambda x, n, r: fake_scribble(x, n[0], r)),
    "pidinet": ((PIDINET_FILE,), lambda x, n, r: pidinet(x, n[0], False, r)),
    "mlsd": ((MLSD_FILE,), lambda x, n, r: mlsd(x, n[0], resolution=r)),
    "lineart": ((LINEART_FILE,), lambda x, n, r: lineart(x, n[0], r)),
    "lineart_coarse": ((LINEART_COARSE_FILE,), lambda x, n, r: lineart(x, n[0], r)),
    "lineart_anime": ((LINEART_ANIME_FILE,), lambda x, n, r: lineart_anime(x, n[0], r)),
    "midas_depth": ((MIDAS_FILE,), lambda x, n, r: midas_depth(x, n[0], r)),
    "midas_normal": ((MIDAS_FILE,), lambda x, n, r: midas_normal(x, n[0], resolution=r)),
    "normalbae": ((NORMALBAE_FILE,), lambda x, n, r: normal_bae(x, n[0], r)),
    "openpose": ((BODY_FILE,), lambda x, n, r: openpose(x, n[0], resolution=r)[0]),
    "openpose_full": (
        (BODY_FILE, HAND_FILE, FACE_FILE),
        lambda x, n, r: openpose(x, n[0], n[1], n[2], True, True, True, r)[0],
    ),
}
