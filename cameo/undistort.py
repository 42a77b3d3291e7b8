"""Lens distortion removed on load: a raw photo and its lens -> a pinhole image and the intrinsics that go with it.

Two models cover what COLMAP and nerfstudio write, both applied to normalised camera coordinates as OpenCV does:

* ``radtan``: OpenCV's radial-tangential model, coefficients in OpenCV order ``(k1, k2, p1, p2[, k3[, k4, k5,
  k6]])`` (k4..k6 are the rational denominator, COLMAP's FULL_OPENCV).
* ``fisheye``: OpenCV's equidistant fisheye, ``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4
  theta^8)``, coefficients ``(k1, k2, k3, k4)`` (COLMAP's OPENCV_FISHEYE, RADIAL_FISHEYE, SIMPLE_RADIAL_FISHEYE).

The undistorted image keeps the raw size; its intrinsics are chosen so that every pixel sees the photo (no black
border: OpenCV's ``getOptimalNewCameraMatrix`` with alpha 0, or ``estimateNewCameraMatrixForUndistortRectify`` with
balance 0 for fisheyes). OpenCV puts pixel centres at integer coordinates, this project at +0.5 (see
``cameo/cameras.py``), so principal points are shifted by half a pixel on the way in and out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

LENS_MODELS = ("radtan", "fisheye")
_RADTAN_SIZES = (4, 5, 8)


@dataclass(frozen=True)
class Lens:
    """The raw photo's pinhole part ``(fx, fy, cx, cy)`` (project pixel convention) and its distortion."""

    fx: float
    fy: float
    cx: float
    cy: float
    model: str
    coeffs: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.model not in LENS_MODELS:
            raise ValueError(f"lens model {self.model!r} is not one of {LENS_MODELS}")
        sizes = _RADTAN_SIZES if self.model == "radtan" else (4,)
        if len(self.coeffs) not in sizes:
            raise ValueError(f"{self.model} lens takes {' or '.join(map(str, sizes))} coefficients, got "
                             f"{len(self.coeffs)}")
        if not all(np.isfinite(self.coeffs)):
            raise ValueError(f"lens coefficients must be finite, got {self.coeffs}")

    def opencv_K(self) -> np.ndarray:
        """Raw intrinsics in OpenCV's pixel convention (centres at integers)."""
        return np.array([[self.fx, 0.0, self.cx - 0.5], [0.0, self.fy, self.cy - 0.5], [0.0, 0.0, 1.0]])

    def dist(self) -> np.ndarray:
        return np.asarray(self.coeffs, dtype=np.float64)


def make_lens(fx: float, fy: float, cx: float, cy: float, model: str, coeffs: tuple[float, ...]) -> Lens | None:
    """A :class:`Lens`, or None when every coefficient is 0 (an ideal pinhole needs no undistortion)."""
    if not any(coeffs):
        return None
    return Lens(float(fx), float(fy), float(cx), float(cy), model, tuple(float(c) for c in coeffs))


@lru_cache(maxsize=64)
def pinhole_intrinsics(lens: Lens, width: int, height: int) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` of the undistorted ``width x height`` image (project pixel convention)."""
    size = (int(width), int(height))
    if lens.model == "fisheye":
        new = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
            lens.opencv_K(), lens.dist(), size, np.eye(3), balance=0.0)
    else:
        new, _ = cv2.getOptimalNewCameraMatrix(lens.opencv_K(), lens.dist(), size, 0.0, size)
    if not np.isfinite(new).all() or new[0, 0] <= 0 or new[1, 1] <= 0:
        raise ValueError(f"OpenCV found no pinhole camera for lens {lens} at {width}x{height}")
    return float(new[0, 0]), float(new[1, 1]), float(new[0, 2]) + 0.5, float(new[1, 2]) + 0.5


@lru_cache(maxsize=16)
def _maps(lens: Lens, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw-image sampling positions (OpenCV convention) of every undistorted pixel: ``map_x, map_y [H, W]``."""
    fx, fy, cx, cy = pinhole_intrinsics(lens, width, height)
    new = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
    if lens.model == "fisheye":
        return cv2.fisheye.initUndistortRectifyMap(lens.opencv_K(), lens.dist(), np.eye(3), new, (width, height),
                                                   cv2.CV_32FC1)
    return cv2.initUndistortRectifyMap(lens.opencv_K(), lens.dist(), None, new, (width, height), cv2.CV_32FC1)


def undistort_image(image: np.ndarray, lens: Lens) -> np.ndarray:
    """``image [H, W(, C)]`` (any dtype OpenCV remaps) seen through ``lens`` -> the pinhole image of the same size,
    whose intrinsics are :func:`pinhole_intrinsics` (bilinear sampling)."""
    height, width = image.shape[:2]
    map_x, map_y = _maps(lens, width, height)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
