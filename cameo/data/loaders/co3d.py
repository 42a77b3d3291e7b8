"""CO3D v2 (``<category>/frame_annotations.jgz``): cameras and depth converted to the internal OpenCV convention.

Conversions (PyTorch3D conventions used by CO3D):

* Pose: PyTorch3D maps world to camera with row vectors, ``X_cam = X_world @ R + T``, in a camera frame with
  +X left, +Y up, +Z forward. In column form ``X_cam = R^T X_world + T``; flipping X and Y gives OpenCV
  (x right, y down, z forward): ``w2c = [diag(-1,-1,1) R^T | diag(-1,-1,1) T]`` and ``c2w = w2c^-1``.
* Intrinsics ``"ndc_isotropic"``: NDC spans [-1, 1] over the shorter image side with +x left and +y up, so with
  ``s = min(W, H) / 2``: ``f_px = f_ndc * s`` and ``c_px = (W/2, H/2) - p_ndc * s``, in pixel units whose origin is
  the image's top-left corner (our convention). ``"ndc_norm_image_bounds"`` uses ``s = (W/2, H/2)`` per axis.
  ``image.size`` is stored as [H, W].
* Depth: 16-bit PNG whose bits are float16 values; z-depth = value * ``depth.scale_adjustment``; 0 / non-finite =
  invalid (NaN here); an optional ``depth.mask_path`` PNG marks valid pixels (non-zero).
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .common import Sequence, SequenceDataset

P3D_TO_OPENCV = np.diag([-1.0, -1.0, 1.0])


def co3d_camera(viewpoint: dict, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ``K [3,3]`` and OpenCV ``c2w [4,4]`` from one CO3D ``viewpoint`` entry of an image of (H, W)."""
    fmt = viewpoint.get("intrinsics_format", "ndc_norm_image_bounds").lower()
    half = np.array([width / 2.0, height / 2.0])
    if fmt == "ndc_isotropic":
        scale = np.full(2, half.min())
    elif fmt == "ndc_norm_image_bounds":
        scale = half
    else:
        raise ValueError(f"viewpoint.intrinsics_format {fmt!r} is not supported")
    f = np.asarray(viewpoint["focal_length"], dtype=np.float64) * scale
    c = half - np.asarray(viewpoint["principal_point"], dtype=np.float64) * scale
    K = np.array([[f[0], 0, c[0]], [0, f[1], c[1]], [0, 0, 1]])
    R = np.asarray(viewpoint["R"], dtype=np.float64)
    T = np.asarray(viewpoint["T"], dtype=np.float64)
    w2c = np.eye(4)
    w2c[:3, :3] = P3D_TO_OPENCV @ R.T
    w2c[:3, 3] = P3D_TO_OPENCV @ T
    return K, np.linalg.inv(w2c)


def read_depth_png(path: Path, scale: float, mask: Path | None = None) -> np.ndarray:
    """CO3D depth: float16 bit patterns in a 16-bit PNG, times ``scale``; invalid -> NaN."""
    try:
        with Image.open(path) as im:
            raw = np.asarray(im, dtype=np.uint16)
    except OSError as err:
        raise ValueError(f"cannot read depth map {path}: {err}") from None
    depth = raw.view(np.float16).astype(np.float32) * np.float32(scale)
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None and mask.is_file():
        with Image.open(mask) as im:
            valid &= np.asarray(im) > 0
    return np.where(valid, depth, np.nan).astype(np.float32)


def read_sequences(path: Path | str) -> list[Sequence]:
    """All sequences of every ``frame_annotations.jgz`` under ``path`` (dataset root or one category folder).

    Paths inside the annotations are relative to the dataset root (the category folder's parent).
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("frame_annotations.jgz")) + sorted(
        path.glob("*/frame_annotations.jgz"))
    if not files:
        raise FileNotFoundError(f"{path}: no CO3D frame_annotations.jgz found")
    sequences = []
    for ann in files:
        root = ann.parent.parent
        try:
            with gzip.open(ann, "rt") as fh:
                frames = json.load(fh)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{ann}: cannot read gzipped JSON: {err}") from None
        by_seq: dict[str, list[dict]] = defaultdict(list)
        for fr in frames:
            by_seq[fr["sequence_name"]].append(fr)
        for name, items in sorted(by_seq.items()):
            items.sort(key=lambda fr: fr["frame_number"])
            Ks, c2ws, scales, masks = [], [], [], []
            for fr in items:
                try:
                    h, w = fr["image"]["size"]
                    K, c2w = co3d_camera(fr["viewpoint"], h, w)
                except (KeyError, TypeError, ValueError) as err:
                    raise ValueError(f"{ann}: frame {fr.get('frame_number')} of {name}: bad image/viewpoint field: "
                                     f"{err}") from None
                Ks.append(K)
                c2ws.append(c2w)
                depth = fr.get("depth") or {}
                scales.append(float(depth.get("scale_adjustment", 1.0)))
                masks.append(root / depth["mask_path"] if depth.get("mask_path") else None)
            has_depth = all((fr.get("depth") or {}).get("path") for fr in items)

            def read(p: Path, i: int, scales=scales, masks=masks) -> np.ndarray:
                return read_depth_png(p, scales[i], masks[i])

            sequences.append(Sequence(
                name, [root / fr["image"]["path"] for fr in items],
                torch.tensor(np.stack(Ks)), torch.tensor(np.stack(c2ws)),
                [root / fr["depth"]["path"] for fr in items] if has_depth else None,
                read if has_depth else None,
            ))
    return sequences


def open_dataset(path: Path, num_views: int = 4, ref_range: tuple[int, int] = (1, 3), resolution: int = 64,
                 seed: int = 0, pointmaps=None) -> SequenceDataset:
    """Pointmaps default to the CO3D depth maps unprojected with the cameras."""
    return SequenceDataset(read_sequences(path), num_views, ref_range, resolution, seed, pointmaps)
