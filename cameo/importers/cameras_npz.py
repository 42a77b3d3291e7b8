"""3x4 projection matrices ``P = K [R | t]`` as DTU/IDR ``cameras.npz`` ship them (``world_mat_i``, optional
``scale_mat_i``), split by RQ decomposition into K (positive focal lengths) and a proper rotation, and composed back."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cameo.cameras import invert_pose
from cameo.scene import Frame, Scene, SceneError, validate_scene

MAX_SKEW = 1e-3  # |K[0,1]| / fx above which a projection matrix is rejected (Frame has no skew term)


def decompose_projection(P: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Split projection matrices ``[..., 3, 4]`` (any scale, any sign) into ``K [..., 3, 3]`` and OpenCV ``c2w``.

    RQ decomposition of the left 3x3 block, done with a batched QR (torch has no RQ) on the row-reversed transpose.
    K is normalised to ``K[2, 2] = 1`` with positive focal lengths; the rotation is proper (det +1); the overall
    sign of ``P`` is absorbed so that the scene lies in front of the camera exactly as ``P`` says. float64 out.
    """
    P = torch.as_tensor(P, dtype=torch.float64)
    M = P[..., :3, :3]
    J = torch.eye(3, dtype=P.dtype).flip(-1)
    Q, U = torch.linalg.qr((J @ M).transpose(-1, -2))  # J M = U^T Q^T  =>  M = (J U^T J)(J Q^T)
    K = J @ U.transpose(-1, -2) @ J
    R = J @ Q.transpose(-1, -2)
    D = torch.diag_embed(torch.sign(torch.diagonal(K, dim1=-2, dim2=-1)))
    K, R = K @ D, D @ R  # D^2 = I: make diag(K) positive
    sign = torch.sign(torch.linalg.det(R))  # det -1 means P was scaled by a negative number
    R = R * sign[..., None, None]
    scale = sign * K[..., 2, 2]  # P = scale * (K / K22) [R | t]
    K = K / K[..., 2:3, 2:3]
    t = torch.linalg.solve(K, P[..., :3, 3:]) / scale[..., None, None]
    w2c = torch.zeros(*P.shape[:-2], 4, 4, dtype=P.dtype)
    w2c[..., :3, :3], w2c[..., :3, 3:], w2c[..., 3, 3] = R, t, 1.0
    return K, invert_pose(w2c)


def compose_projection(K: torch.Tensor | np.ndarray, c2w: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``P = K [R | t]`` ``[..., 3, 4]`` from intrinsics and OpenCV camera-to-world (world -> pixel, homogeneous)."""
    K = torch.as_tensor(K, dtype=torch.float64)
    return K @ invert_pose(torch.as_tensor(c2w, dtype=torch.float64))[..., :3, :]


def read_cameras_npz(
    path: str | os.PathLike[str],
    indices: Sequence[int] | None = None,
    pixel_transform: np.ndarray | None = None,
    use_scale_mat: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``K [V, 3, 3]``, OpenCV ``c2w [V, 4, 4]`` (float64) from an IDR/DTU ``cameras.npz``.

    ``P_i = pixel_transform @ world_mat_i[:3] @ scale_mat_i``: ``scale_mat_i`` maps the normalised (unit-sphere)
    frame to the world, so with ``use_scale_mat`` the cameras come out in that normalised frame. ``pixel_transform``
    (3x3) fixes images that were cropped/resized after calibration (e.g. DTU's ``[[0.32,0,-64],[0,0.32,0],[0,0,1]]``).
    ``indices`` default: every ``world_mat_i`` in order.
    """
    source = Path(path)
    try:
        data = dict(np.load(source))
    except (OSError, ValueError) as err:
        raise SceneError(source, "", f"cannot read npz: {err}") from None
    if indices is None:
        indices = sorted(int(k.removeprefix("world_mat_")) for k in data if k.startswith("world_mat_") and "inv" not in k)
        if not indices:
            raise SceneError(source, "world_mat_0", "missing field (no world_mat_i arrays)")
    mats = []
    for i in indices:
        key = f"world_mat_{i}"
        if key not in data:
            raise SceneError(source, key, "missing field")
        P = np.asarray(data[key], dtype=np.float64)
        if P.shape not in ((3, 4), (4, 4)) or not np.isfinite(P).all():
            raise SceneError(source, key, f"must be a finite 3x4 or 4x4 matrix, got shape {list(P.shape)}")
        P = P[:3]
        if use_scale_mat and f"scale_mat_{i}" in data:
            P = P @ np.asarray(data[f"scale_mat_{i}"], dtype=np.float64)
        if pixel_transform is not None:
            P = np.asarray(pixel_transform, dtype=np.float64) @ P
        if abs(np.linalg.det(P[:, :3])) < 1e-12 * max(1.0, np.abs(P[:, :3]).max() ** 3):
            raise SceneError(source, key, "left 3x3 block is singular (not a projective camera)")
        mats.append(P)
    K, c2w = decompose_projection(np.stack(mats))
    skew = (K[:, 0, 1].abs() / K[:, 0, 0]).max()
    if skew > MAX_SKEW:
        bad = indices[int((K[:, 0, 1].abs() / K[:, 0, 0]).argmax())]
        raise SceneError(source, f"world_mat_{bad}", f"intrinsics have skew {float(skew):.3g} x fx (not supported)")
    return K, c2w


def import_cameras_npz(
    path: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    indices: Sequence[int],
    pixel_transform: np.ndarray | None = None,
    use_scale_mat: bool = True,
    check_images: bool = True,
) -> Scene:
    """A validated :class:`Scene` of views ``indices`` from ``cameras.npz``; ``images`` are their files (same order).

    Image sizes come from the files (the npz carries none).
    """
    source = Path(path)
    if len(images) != len(indices):
        raise SceneError(source, "images", f"got {len(images)} images for {len(indices)} indices")
    K, c2w = read_cameras_npz(source, indices, pixel_transform, use_scale_mat)
    frames = []
    for j, (image, k, m) in enumerate(zip(images, K.numpy(), c2w.numpy())):
        try:
            with Image.open(image) as im:
                width, height = im.size
        except OSError as err:
            raise SceneError(source, f"images[{j}]", f"cannot read image {image}: {err}") from None
        frames.append(Frame(Path(image).resolve(), width, height, k[0, 0], k[1, 1], k[0, 2], k[1, 2], m))
    return validate_scene(Scene(frames, source), check_images)
