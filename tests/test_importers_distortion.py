"""Distorted captures are undistorted on load instead of refused: a nerfstudio and a COLMAP two-view capture whose
photos went through a known lens come back as pinhole images whose pixels see what the lens-free camera saw, and
``cameo-recon`` runs on them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cameo.data.loaders import colmap
from cameo.importers import import_colmap, import_nerfstudio
from cameo.importers.nerfstudio import opencv_to_opengl
from cameo.scene import Scene, SceneError, save_scene
from recon import cli

W, H = 64, 48
FX, FY, CX, CY = 60.0, 60.0, 32.0, 24.0
K1, K2 = -0.22, 0.05


def _c2w(x: float) -> np.ndarray:
    c2w = np.eye(4)
    c2w[0, 3] = x
    return c2w


def distorted_ramp() -> np.ndarray:
    """uint8 photo through the lens (k1, k2) of a scene whose colour encodes the lens-free pixel: R = u / W, G = v / H
    (the pinhole image of the same camera is an exact ramp)."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    K = np.array([[FX, 0, CX - 0.5], [0, FY, CY - 0.5], [0, 0, 1]])  # OpenCV pixel convention
    raw = np.stack([u - 0.5, v - 0.5], -1).reshape(-1, 1, 2)
    ideal = cv2.undistortPoints(raw, K, np.array([K1, K2, 0.0, 0.0]), P=K).reshape(H, W, 2) + 0.5
    rgb = np.stack([ideal[..., 0] / W, ideal[..., 1] / H, np.full((H, W), 0.5)], -1)
    return (rgb.clip(0, 1) * 255 + 0.5).astype(np.uint8)


def write_capture(folder: Path) -> Path:
    """A two-view nerfstudio capture (OPENCV model, k1/k2 declared) of distorted photos; returns transforms.json."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(2):
        Image.fromarray(distorted_ramp()).save(folder / f"view_{i}.png")
        frames.append({"file_path": f"view_{i}.png", "transform_matrix": opencv_to_opengl(_c2w(0.3 * i)).tolist()})
    meta = {"camera_model": "OPENCV", "w": W, "h": H, "fl_x": FX, "fl_y": FY, "cx": CX, "cy": CY, "k1": K1,
            "k2": K2, "p1": 0.0, "p2": 0.0, "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(meta))
    return folder / "transforms.json"


def _ramp_error(scene: Scene) -> float:
    """Median pixel distance between where each undistorted pixel's ray meets the lens-free camera and the ramp it
    shows (border of 2 pixels left out)."""
    images = scene.load_images().numpy()
    frame = scene.frames[0]
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    want = np.stack([(u - frame.cx) / frame.fx * FX + CX, (v - frame.cy) / frame.fy * FY + CY], -1)
    seen = np.stack([images[0, 0] * W, images[0, 1] * H], -1)
    return float(np.median(np.linalg.norm(seen - want, axis=-1)[2:-2, 2:-2]))


def test_nerfstudio_capture_with_k1_k2_is_undistorted(tmp_path: Path) -> None:
    scene = import_nerfstudio(write_capture(tmp_path / "capture"))
    frame = scene.frames[0]
    assert frame.lens is not None and frame.lens.coeffs[:2] == (K1, K2)
    assert (frame.fx, frame.cx) != (FX, CX)  # barrel distortion: the pinhole image without border zooms in
    raw_error = float(np.median(np.linalg.norm(np.stack(np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5), -1)
                                               - np.asarray(Image.open(frame.image))[..., :2] / 255 * [W, H], axis=-1)))
    assert _ramp_error(scene) < 0.3 < raw_error
    with pytest.raises(SceneError, match="no lens distortion"):
        save_scene(scene, tmp_path / "scene.json")


def test_colmap_opencv_camera_is_undistorted(tmp_path: Path) -> None:
    capture = tmp_path / "colmap"
    write_capture(capture / "images")
    sparse = capture / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text(f"1 OPENCV {W} {H} {FX} {FY} {CX} {CY} {K1} {K2} 0 0\n")
    lines = [f"{i + 1} 1 0 0 0 {-0.3 * i} 0 0 1 view_{i}.png\n" for i in range(2)]
    (sparse / "images.txt").write_text("".join(f"{line}\n" for line in lines))
    scene = import_colmap(sparse)
    assert _ramp_error(scene) < 0.3
    (seq,) = colmap.read_sequences(capture)  # the training loader: same intrinsics, same undistorted photos
    np.testing.assert_allclose(seq.K.numpy(), np.stack([f.K for f in scene.frames]))
    np.testing.assert_array_equal(seq.image(1).numpy(), scene.load_images()[1].numpy())


def test_cameo_recon_runs_on_a_distorted_two_view_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "res" / "splat.ply"
    args = [write_capture(tmp_path / "capture"), "--inputs-only", "--out", out, "--fit-iterations", "1",
            "--fit-points", "50", "--device", "cpu", "--no-video", "--quiet"]
    code = cli.main([str(a) for a in args])
    assert code == 0, capsys.readouterr().err
    assert out.is_file()


def test_cameo_app_upload_with_a_distorted_camera_file_is_undistorted(tmp_path: Path) -> None:
    from app.inputs import build_scene

    transforms = write_capture(tmp_path / "capture")
    uploads = [transforms.parent / "view_0.png", transforms.parent / "view_1.png"]
    scene = build_scene(uploads, camera_source="file", camera_file=transforms)
    assert all(f.lens is not None for f in scene.frames) and _ramp_error(scene) < 0.3
