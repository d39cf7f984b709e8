"""OpenPose keypoint decoding: network maps -> peaks -> limbs -> people, as the ControlNet annotator does.

Everything here works on NumPy arrays of one image (float64 maps, ``(H, W, C)``), reproducing the
reference's arithmetic step by step so that the results (the ``candidate`` and ``subset`` arrays, the
hand and face peaks) are identical, while doing the heavy parts as array operations: the Gaussian
filter and peak search run on all 18 parts at once, and every limb scores all of its candidate pairs
and their 10 samples along the limb in one go. Only the greedy matching and the assembly of people,
which are sequential by definition and touch a few dozen rows, stay loops.

Conventions (the reference's): ``candidate`` is ``(N, 4)`` float64 rows ``(x, y, score, id)`` in pixels
of the detection image (shape ``(0,)`` when nothing was found); ``subset`` is ``(P, 20)`` float64 rows:
columns 0..17 index ``candidate`` (``-1`` = missing part), 18 the total score, 19 the number of parts.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Limbs as (part A, part B), 1-based COCO-18 part numbers, and their PAF channel pairs (x, y).
LIMB_SEQ = [
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
    (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18),
]  # fmt: skip
PAF_CHANNELS = [
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
    (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
]  # fmt: skip
N_PARTS = 18
PEAK_THRESHOLD = 0.1  # heatmap peaks (thre1)
PAF_THRESHOLD = 0.05  # PAF samples along a limb (thre2)
MID_NUM = 10  # PAF samples per limb


# ----------------------------------------------------------------------------------------------------
# Resizing and Gaussian filtering exactly as the reference (OpenCV and SciPy) compute them.


def cv_resize(x: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    """``cv2.resize`` of an ``(H, W)`` or ``(H, W, C)`` array, any ``C`` (4 channels at a time)."""
    if x.ndim == 2 or x.shape[2] <= 4:
        out = cv2.resize(x, (width, height), interpolation=interpolation)
        return out.reshape(height, width, *x.shape[2:])
    parts = [cv_resize(x[:, :, i : i + 4], height, width, interpolation) for i in range(0, x.shape[2], 4)]
    return np.concatenate(parts, axis=2)


def smart_resize(x: np.ndarray, height: float, width: float) -> np.ndarray:
    """The annotator's resize: area averaging when shrinking (by the summed sides), Lanczos-4 otherwise.

    Target sides are truncated to integers, as the reference does, but kept at least 1 px: the body pass
    scales the height to 184 px, which left a side of an image taller than ~184 times its width at 0 (OpenCV
    then raised an assertion error).
    """
    h, w = x.shape[:2]
    k = float(height + width) / float(h + w)
    size = max(1, int(height)), max(1, int(width))
    return cv_resize(x, *size, cv2.INTER_AREA if k < 1 else cv2.INTER_LANCZOS4)


def gaussian_filter(x: np.ndarray, sigma: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(x, sigma)`` on axes 0 and 1 of a float64 array, bit for bit.

    Truncation at 4 sigma, mirror ("reflect") borders, and SciPy's summation order for symmetric
    kernels: the centre tap first, then ``(x[i - j] + x[i + j]) * w[j]`` from the outermost ``j`` in.
    """
    radius = int(4.0 * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 / (sigma * sigma) * t**2)
    w = w / w.sum()
    out = np.asarray(x, dtype=np.float64)
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="symmetric")

        def tap(offset: int, p: np.ndarray = p, n: int = n, axis: int = axis) -> np.ndarray:
            index = [slice(None)] * p.ndim
            index[axis] = slice(radius + offset, radius + offset + n)
            return p[tuple(index)]

        acc = tap(0) * w[radius]
        term = np.empty_like(acc)
        for j in range(radius, 0, -1):
            np.add(tap(-j), tap(j), out=term)
            term *= w[radius - j]
            acc += term
        out = acc
    return out


# ----------------------------------------------------------------------------------------------------
# Body.


def find_peaks(heatmaps: np.ndarray, threshold: float = PEAK_THRESHOLD) -> list[np.ndarray]:
    """Local maxima of each smoothed part heatmap.

    Args:
        heatmaps: ``(H, W, >= 18)`` float64, the averaged heatmaps (first 18 channels are parts).

    Returns:
        18 arrays ``(n_i, 4)`` float64 of rows ``(x, y, score, id)``: pixels where the map blurred with
        sigma 3 is ``>=`` its 4 neighbours (zero outside) and ``> threshold``, in raster order; ``score``
        is the unblurred value; ``id`` numbers the peaks of all parts consecutively.
    """
    maps = np.ascontiguousarray(heatmaps[:, :, :N_PARTS], dtype=np.float64)
    blur = gaussian_filter(maps, 3.0)
    z = np.zeros_like(blur)
    up = np.concatenate([z[:1], blur[:-1]], 0)
    down = np.concatenate([blur[1:], z[:1]], 0)
    left = np.concatenate([z[:, :1], blur[:, :-1]], 1)
    right = np.concatenate([blur[:, 1:], z[:, :1]], 1)
    peak = (blur >= up) & (blur >= down) & (blur >= left) & (blur >= right) & (blur > threshold)
    out, counter = [], 0
    for part in range(N_PARTS):
        ys, xs = np.nonzero(peak[:, :, part])
        ids = np.arange(counter, counter + len(xs))
        out.append(np.stack([xs, ys, maps[ys, xs, part], ids], 1).astype(np.float64).reshape(-1, 4))
        counter += len(xs)
    return out


def score_limb(
    cand_a: np.ndarray, cand_b: np.ndarray, paf: np.ndarray, height: int, threshold: float = PAF_THRESHOLD
) -> np.ndarray:
    """Score every (A, B) pair of one limb by the PAF along the segment; keep a greedy one-to-one matching.

    Args:
        cand_a, cand_b: ``(nA, 4)``, ``(nB, 4)`` peaks of the limb's two parts.
        paf: ``(H, W, 2)`` float64, the limb's PAF (x, y).
        height: image height (the distance prior favours limbs shorter than half of it).

    Returns:
        ``(n, 5)`` float64 rows ``(id A, id B, score, i, j)``, best score first, each ``i`` and ``j`` once,
        at most ``min(nA, nB)`` rows. A pair qualifies when more than 80 % of its 10 samples exceed
        ``threshold`` and its mean score plus ``min(0.5 * height / length - 1, 0)`` is positive.
    """
    na, nb = len(cand_a), len(cand_b)
    ax, ay = cand_a[:, 0][:, None], cand_a[:, 1][:, None]
    bx, by = cand_b[:, 0][None, :], cand_b[:, 1][None, :]
    vx, vy = bx - ax, by - ay  # (nA, nB), integer-valued
    norm = np.maximum(0.001, np.sqrt(vx * vx + vy * vy))
    ux, uy = vx / norm, vy / norm
    # np.linspace(a, b, 10): arange * ((b - a) / 9) + a, the last sample exactly b.
    steps = np.arange(MID_NUM, dtype=np.float64)
    sx = steps * (vx / (MID_NUM - 1))[..., None] + ax[..., None]
    sy = steps * (vy / (MID_NUM - 1))[..., None] + ay[..., None]
    sx[..., -1], sy[..., -1] = np.broadcast_to(bx, (na, nb)), np.broadcast_to(by, (na, nb))
    xi, yi = np.rint(sx).astype(np.intp), np.rint(sy).astype(np.intp)
    samples = paf[yi, xi, 0] * ux[..., None] + paf[yi, xi, 1] * uy[..., None]  # (nA, nB, 10)
    total = np.zeros((na, nb))
    for i in range(MID_NUM):  # sequential, as Python's sum()
        total = total + samples[..., i]
    prior = np.minimum(0.5 * height / norm - 1, 0)
    score = total / MID_NUM + prior
    ok = ((samples > threshold).sum(-1) > 0.8 * MID_NUM) & (score > 0)
    ii, jj = np.nonzero(ok)
    s = score[ii, jj]
    order = np.argsort(-s, kind="stable")
    rows, used_a, used_b = [], set(), set()
    for o in order:
        i, j = int(ii[o]), int(jj[o])
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        rows.append((cand_a[i, 3], cand_b[j, 3], s[o], i, j))
        if len(rows) >= min(na, nb):
            break
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def assemble(connections: list[np.ndarray | None], candidate: np.ndarray) -> np.ndarray:
    """Group limb connections into people (the reference's subset construction and pruning).

    Args:
        connections: per limb of :data:`LIMB_SEQ`, :func:`score_limb`'s rows, or ``None`` when one
            of its parts has no peak.
        candidate: ``(N, 4)`` all peaks.

    Returns:
        ``(P, 20)`` float64 subset (people with at least 4 parts and a mean score of at least 0.4).
    """
    subset = -1 * np.ones((0, 20))
    for k, conn in enumerate(connections):
        if conn is None:
            continue
        index_a, index_b = LIMB_SEQ[k][0] - 1, LIMB_SEQ[k][1] - 1
        for i in range(len(conn)):
            part_a, part_b, s = conn[i, 0], conn[i, 1], conn[i, 2]
            found_rows = np.nonzero((subset[:, index_a] == part_a) | (subset[:, index_b] == part_b))[0]
            found = len(found_rows)
            if found == 1:
                j = found_rows[0]
                if subset[j, index_b] != part_b:
                    subset[j, index_b] = part_b
                    subset[j, -1] += 1
                    subset[j, -2] += candidate[int(part_b), 2] + s
            elif found >= 2:
                j1, j2 = found_rows[0], found_rows[1]
                membership = ((subset[j1] >= 0).astype(int) + (subset[j2] >= 0).astype(int))[:-2]
                if not (membership == 2).any():  # disjoint: merge
                    subset[j1, :-2] += subset[j2, :-2] + 1
                    subset[j1, -2:] += subset[j2, -2:]
                    subset[j1, -2] += s
                    subset = np.delete(subset, j2, 0)
                else:
                    subset[j1, index_b] = part_b
                    subset[j1, -1] += 1
                    subset[j1, -2] += candidate[int(part_b), 2] + s
            elif k < 17:
                row = -1 * np.ones(20)
                row[index_a], row[index_b] = part_a, part_b
                row[-1] = 2
                row[-2] = 0 + candidate[int(part_a), 2] + candidate[int(part_b), 2] + s
                subset = np.vstack([subset, row])
    keep = ~((subset[:, -1] < 4) | (subset[:, -2] / subset[:, -1] < 0.4))
    return subset[keep]


def decode_body(heatmaps: np.ndarray, pafs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """People from averaged body maps at the image's size.

    Args:
        heatmaps: ``(H, W, 19)`` float64.
        pafs: ``(H, W, 38)`` float64.

    Returns:
        ``(candidate, subset)`` as described in the module docstring.
    """
    peaks = find_peaks(heatmaps)
    connections: list[np.ndarray | None] = []
    for (a, b), (cx, cy) in zip(LIMB_SEQ, PAF_CHANNELS):
        ca, cb = peaks[a - 1], peaks[b - 1]
        if len(ca) == 0 or len(cb) == 0:
            connections.append(None)
            continue
        connections.append(score_limb(ca, cb, pafs[:, :, [cx, cy]], heatmaps.shape[0]))
    nonempty = [p for p in peaks if len(p)]
    candidate = np.concatenate(nonempty, 0) if nonempty else np.array([])
    return candidate, assemble(connections, candidate)


def upsample_maps(maps: np.ndarray, padded: tuple[int, int], pad: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Network maps ``(h, w, C)`` float32 -> ``(H, W, C)`` float32: x8 (Lanczos), crop the padding, resize.

    Args:
        padded: ``(height, width)`` of the padded network input.
        pad: ``(bottom, right)`` padding to crop.
        size: target ``(H, W)``.
    """
    h, w = maps.shape[:2]
    up = smart_resize(maps, h * 8, w * 8)
    up = up[: padded[0] - pad[0], : padded[1] - pad[1]]
    return smart_resize(up, size[0], size[1])


# ----------------------------------------------------------------------------------------------------
# Boxes for hands and face from a body (pixel coordinates).


def hand_boxes(
    keypoints: list[tuple[float, float] | None], height: int, width: int
) -> list[tuple[int, int, int, bool]]:
    """Square hand boxes ``(x, y, side, is_left)`` from shoulder, elbow and wrist (OpenPose's hand detector).

    The box is centred a third of the forearm beyond the wrist, 1.5 x max(forearm, 0.9 x upper arm)
    wide, clipped to the image; boxes under 20 px are dropped. Left hand first.
    """
    out = []
    for shoulder, elbow, wrist, is_left in ((5, 6, 7, True), (2, 3, 4, False)):
        pts = [keypoints[shoulder], keypoints[elbow], keypoints[wrist]]
        if any(p is None for p in pts):
            continue
        (x1, y1), (x2, y2), (x3, y3) = pts  # type: ignore[misc]
        x = x3 + 0.33 * (x3 - x2)
        y = y3 + 0.33 * (y3 - y2)
        d_wrist_elbow = math.sqrt((x3 - x2) ** 2 + (y3 - y2) ** 2)
        d_elbow_shoulder = math.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
        side = 1.5 * max(d_wrist_elbow, 0.9 * d_elbow_shoulder)
        x -= side / 2
        y -= side / 2
        x, y = max(x, 0), max(y, 0)
        w1 = width - x if x + side > width else side
        w2 = height - y if y + side > height else side
        side = min(w1, w2)
        if side >= 20:
            out.append((int(x), int(y), int(side), is_left))
    return out


def face_box(keypoints: list[tuple[float, float] | None], height: int, width: int) -> tuple[int, int, int] | None:
    """Square face box ``(x, y, side)`` around the nose from the eyes (x3) and ears (x1.5), or ``None``."""
    head = keypoints[0]
    if head is None or all(keypoints[i] is None for i in (14, 15, 16, 17)):
        return None
    x0, y0 = head
    half = 0.0
    for i, factor in ((14, 3.0), (15, 3.0), (16, 1.5), (17, 1.5)):
        p = keypoints[i]
        if p is not None:
            half = max(half, max(abs(x0 - p[0]), abs(y0 - p[1])) * factor)
    x, y = max(x0 - half, 0), max(y0 - half, 0)
    w1 = width - x if x + half > width else half * 2
    w2 = height - y if y + half > height else half * 2
    side = min(w1, w2)
    return (int(x), int(y), int(side)) if side >= 20 else None


# ----------------------------------------------------------------------------------------------------
# Hand and face peaks.


def _components(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components labelled 1.. in raster order of their first pixel (as scikit-image)."""
    n, labels = cv2.connectedComponents(binary, connectivity=8)
    flat = labels.ravel()
    first = np.full(n, flat.size)
    np.minimum.at(first, flat, np.arange(flat.size))
    order = np.argsort(first[1:], kind="stable") + 1
    remap = np.zeros(n, dtype=labels.dtype)
    remap[order] = np.arange(1, n)
    return remap[labels], n - 1


def hand_peaks(heatmaps: np.ndarray, height: int, width: int, threshold: float = 0.05) -> np.ndarray:
    """21 hand keypoints from averaged ``(128, 128, 22)`` float64 heatmaps, in pixels of the crop.

    Per part: blur (sigma 3), threshold, keep the connected component with the largest sum of the
    raw map, take its maximum; ``(0, 0)`` when nothing passes. Returns ``(21, 2)`` int ``(x, y)``.
    """
    size = heatmaps.shape[0]
    blur = gaussian_filter(np.ascontiguousarray(heatmaps[:, :, :21]), 3.0)
    peaks = []
    for part in range(21):
        raw = heatmaps[:, :, part].copy()
        binary = np.ascontiguousarray(blur[:, :, part] > threshold, dtype=np.uint8)
        if binary.sum() == 0:
            peaks.append([0, 0])
            continue
        labels, n = _components(binary)
        best = int(np.argmax([np.sum(raw[labels == i]) for i in range(1, n + 1)])) + 1
        raw[labels != best] = 0
        i = int(raw.max(1).argmax())
        j = int(raw[i].argmax())
        peaks.append([int(float(j) * float(width) / float(size)), int(float(i) * float(height) / float(size))])
    return np.array(peaks)


def face_peaks(heatmaps: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Face landmarks from ``(71, H, W)`` float32 heatmaps at the crop's size: ``(n, 2)`` int ``(x, y)``.

    Each map above ``threshold`` gives its (first) maximum; maps with nothing above are skipped, so
    ``n <= 71`` (as in the reference, later landmarks then shift down).
    """
    c, h, w = heatmaps.shape
    flat = heatmaps.reshape(c, -1)
    over = flat > threshold
    idx = np.where(over, flat, -np.inf).argmax(1)
    keep = over.any(1)
    return np.stack([idx % w, idx // w], 1)[keep]
