"""Undistortion against OpenCV's own projection: a known 3D point projected through the lens (``cv2.projectPoints``
or ``cv2.fisheye.projectPoints``) and undistorted lands at its pinhole projection under the new intrinsics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cameo.undistort import Lens, make_lens, pinhole_intrinsics, undistort_image

W, H = 160, 120
LENSES = [
    Lens(150.0, 148.0, 81.0, 59.5, "radtan", (-0.25, 0.08, 0.001, -0.0015)),  # barrel, phone-like (OPENCV)
    Lens(150.0, 150.0, 80.0, 60.0, "radtan", (0.12, 0.0, 0.0, 0.0, 0.01)),  # pincushion with k3
    Lens(90.0, 90.0, 80.5, 60.0, "fisheye", (0.05, -0.01, 0.002, 0.0)),  # OPENCV_FISHEYE
]


def _points(lens: Lens, count: int = 200) -> np.ndarray:
    """Camera-frame points whose pinhole projection under the new intrinsics falls well inside the image."""
    fx, fy, cx, cy = pinhole_intrinsics(lens, W, H)
    rng = np.random.default_rng(0)
    uv = rng.uniform([3, 3], [W - 3, H - 3], size=(count, 2))
    z = rng.uniform(1.0, 5.0, size=(count, 1))
    return np.concatenate([(uv - [cx, cy]) / [fx, fy] * z, z], 1)


def _distorted(points: np.ndarray, lens: Lens) -> np.ndarray:
    """OpenCV's projection through the lens, in the project pixel convention (centres at +0.5)."""
    obj = points.reshape(-1, 1, 3)
    if lens.model == "fisheye":
        uv, _ = cv2.fisheye.projectPoints(obj, np.zeros((3, 1)), np.zeros((3, 1)), lens.opencv_K(), lens.dist())
    else:
        uv, _ = cv2.projectPoints(obj, np.zeros(3), np.zeros(3), lens.opencv_K(), lens.dist())
    return uv.reshape(-1, 2) + 0.5


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample ``image [H, W, C]`` at project-convention coordinates ``uv [N, 2]``."""
    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    ax, ay = (x - x0)[:, None], (y - y0)[:, None]
    return ((1 - ax) * (1 - ay) * image[y0, x0] + ax * (1 - ay) * image[y0, x0 + 1]
            + (1 - ax) * ay * image[y0 + 1, x0] + ax * ay * image[y0 + 1, x0 + 1])


@pytest.mark.parametrize("lens", LENSES, ids=["radtan", "radtan-k3", "fisheye"])
def test_undistorted_point_lands_at_its_pinhole_projection(lens: Lens) -> None:
    # a raw image whose pixels hold their own (u, v): after undistortion, the pixel at a point's pinhole projection
    # must hold the raw position where OpenCV projects that point through the lens
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    raw = np.stack([u, v], -1).astype(np.float32)
    pinhole = undistort_image(raw, lens)
    points = _points(lens)
    fx, fy, cx, cy = pinhole_intrinsics(lens, W, H)
    projected = points[:, :2] / points[:, 2:] * [fx, fy] + [cx, cy]
    seen = _bilinear(pinhole.astype(np.float64), projected)
    error = np.linalg.norm(seen - _distorted(points, lens), axis=1)
    assert error.max() < 0.1, error.max()


@pytest.mark.parametrize("lens", LENSES, ids=["radtan", "radtan-k3", "fisheye"])
def test_undistorted_image_sees_the_photo_everywhere(lens: Lens) -> None:
    # the rays of the undistorted image's border pixels, projected through the lens, fall inside the raw photo
    fx, fy, cx, cy = pinhole_intrinsics(lens, W, H)
    u = np.concatenate([np.linspace(0.5, W - 0.5, 50), np.full(50, 0.5), np.linspace(0.5, W - 0.5, 50),
                        np.full(50, W - 0.5)])
    v = np.concatenate([np.full(50, 0.5), np.linspace(0.5, H - 0.5, 50), np.full(50, H - 0.5),
                        np.linspace(0.5, H - 0.5, 50)])
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], 1)
    raw = _distorted(rays, lens)
    assert (raw > -0.5).all() and (raw[:, 0] < W + 0.5).all() and (raw[:, 1] < H + 0.5).all()


def test_make_lens_without_distortion_is_none_and_bad_lenses_are_refused() -> None:
    assert make_lens(100, 100, 50, 50, "radtan", (0.0, 0.0, 0.0, 0.0)) is None
    with pytest.raises(ValueError, match="fisheye lens takes 4"):
        Lens(100, 100, 50, 50, "fisheye", (0.1, 0.0))
    with pytest.raises(ValueError, match="not one of"):
        Lens(100, 100, 50, 50, "fov", (0.1, 0.0, 0.0, 0.0))
