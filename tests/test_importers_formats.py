"""Importers: nerfstudio (OpenGL) <-> OpenCV round trips, projection matrices <-> (K, c2w), DTU data check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cameo.cameras import look_at, project_points
from cameo.importers import (
    compose_projection,
    decompose_projection,
    import_cameras_npz,
    import_nerfstudio,
    opencv_to_opengl,
    opengl_to_opencv,
    read_cameras_npz,
    read_nerfstudio,
    save_nerfstudio,
)
from cameo.scene import Frame, SceneError, load_scene, save_scene

DTU = Path("/work/shared/data/dtu_scan24")
DTU_CROP_FIX = np.array([[0.32, 0.0, -64.0], [0.0, 0.32, 0.0], [0.0, 0.0, 1.0]])


def _random_cameras(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n cameras on a sphere looking at the origin, with random pinhole intrinsics (float64)."""
    g = torch.Generator().manual_seed(seed)
    eye = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1) * 3.0
    c2w = look_at(eye, torch.zeros(n, 3, dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    K = torch.zeros(n, 3, 3, dtype=torch.float64)
    K[:, 0, 0] = 200 + 300 * torch.rand(n, generator=g, dtype=torch.float64)
    K[:, 1, 1] = K[:, 0, 0] * (0.9 + 0.2 * torch.rand(n, generator=g, dtype=torch.float64))
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = 64.0, 48.0, 1.0
    return K, c2w


def _png(path: Path, w: int = 8, h: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_projection_round_trip_any_scale_and_sign() -> None:
    K, c2w = _random_cameras(16)
    P = compose_projection(K, c2w)
    scales = torch.tensor([1.0, -1.0, 1e3, -7.5] * 4, dtype=torch.float64)
    K2, c2w2 = decompose_projection(P * scales[:, None, None])
    assert torch.allclose(K2, K, atol=1e-9) and torch.allclose(c2w2, c2w, atol=1e-9)
    assert (K2[:, 0, 0] > 0).all() and (K2[:, 1, 1] > 0).all()
    R = c2w2[:, :3, :3]
    assert torch.allclose(torch.linalg.det(R), torch.ones(16, dtype=torch.float64))
    assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3, dtype=torch.float64).expand(16, 3, 3), atol=1e-12)
    P2 = compose_projection(K2, c2w2)
    assert torch.allclose(P2, P, atol=1e-9)


def test_decomposed_camera_sees_points_in_front() -> None:
    K, c2w = _random_cameras(4, seed=3)
    P = -2.0 * compose_projection(K, c2w)  # negative scale: still the same camera
    K2, c2w2 = decompose_projection(P)
    uv, z = project_points(torch.zeros(4, 1, 3, dtype=torch.float64), K2, c2w2)
    assert (z > 0).all()
    assert torch.allclose(uv[:, 0], K[:, :2, 2], atol=1e-9)  # origin is on every optical axis


def test_opengl_opencv_flip_is_involution_and_sees_the_same_point() -> None:
    gl = torch.eye(4, dtype=torch.float64)
    gl[:3, 3] = torch.tensor([0.0, 0.0, 5.0])  # OpenGL camera on +z looking down -z at the origin
    cv = opengl_to_opencv(gl)
    assert torch.equal(opencv_to_opengl(cv), gl)
    K = torch.tensor([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]], dtype=torch.float64)
    uv, z = project_points(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64), K, cv)
    assert torch.allclose(z, torch.tensor([5.0, 5.0], dtype=torch.float64))
    assert torch.allclose(uv[0], torch.tensor([32.0, 24.0], dtype=torch.float64))
    assert uv[1, 1] < 24.0  # world +y (OpenGL up) appears higher in the image (smaller v)


def test_nerfstudio_round_trip(tmp_path: Path) -> None:
    K, c2w = _random_cameras(5, seed=1)
    frames = [
        Frame(_png(tmp_path / "images" / f"{i}.png", 128, 96), 128, 96, *map(float, (k[0, 0], k[1, 1], k[0, 2], k[1, 2])),
              m.numpy())
        for i, (k, m) in enumerate(zip(K, c2w))
    ]
    out = save_nerfstudio(frames, tmp_path / "transforms.json")
    meta = json.loads(out.read_text())
    assert meta["frames"][2]["file_path"] == "images/2.png"
    gl = np.array(meta["frames"][2]["transform_matrix"])
    assert np.allclose(gl[:3, 1], -c2w[2, :3, 1].numpy()) and np.allclose(gl[:3, 2], -c2w[2, :3, 2].numpy())
    back = read_nerfstudio(out)
    assert len(back) == 5
    for a, b in zip(frames, back):
        assert a.image == b.image and (a.width, a.height) == (b.width, b.height)
        assert np.allclose(a.K, b.K) and np.allclose(a.c2w, b.c2w, atol=1e-12)
    scene = import_nerfstudio(out, indices=[1, 3])
    assert torch.allclose(scene.c2w, c2w[[1, 3]].float())
    saved = save_scene(scene, tmp_path / "scene.json")
    assert torch.equal(load_scene(saved).c2w, scene.c2w)


def test_nerfstudio_global_intrinsics_and_blender_angle(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "r_0.png", 8, 6)
    gl = np.eye(4).tolist()
    meta = {"fl_x": 5.0, "fl_y": 6.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6,
            "frames": [{"file_path": "train/r_0.png", "transform_matrix": gl},
                       {"file_path": "train/r_0.png", "transform_matrix": gl, "fl_x": 7.0}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    frames = read_nerfstudio(tmp_path / "transforms.json")
    assert (frames[0].fx, frames[0].fy, frames[1].fx, frames[1].fy) == (5.0, 6.0, 7.0, 6.0)
    blender = {"camera_angle_x": 2 * math.atan(0.5), "frames": [{"file_path": "./train/r_0", "transform_matrix": gl}]}
    (tmp_path / "blender.json").write_text(json.dumps(blender))
    (frame,) = read_nerfstudio(tmp_path / "blender.json")
    assert frame.image.name == "r_0.png" and (frame.width, frame.height) == (8, 6)
    assert math.isclose(frame.fx, 8.0) and (frame.cx, frame.cy) == (4.0, 3.0)


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda m: m["frames"][0].pop("transform_matrix"), "frames[0].transform_matrix", "missing"),
        (lambda m: m["frames"][1].__setitem__("transform_matrix", np.diag([1.0, 1, 2, 1]).tolist()),
         "frames[1].transform_matrix", "orthonormal"),
        (lambda m: m.pop("fl_x"), "frames[0].fl_x", "missing"),
        (lambda m: m.__setitem__("fl_y", -3.0), "frames[0].fy", "> 0"),
        (lambda m: m.__setitem__("k4", 0.1), "frames[0].k4", "no OpenCV equivalent"),
        (lambda m: m.update(camera_model="OPENCV_FISHEYE", p1=0.01), "frames[0].p1", "no tangential"),
        (lambda m: m.__setitem__("camera_model", "EQUIRECTANGULAR"), "camera_model", "panorama"),
        (lambda m: m["frames"][0].__setitem__("cx", "middle"), "frames[0].cx", "number"),
    ],
)
def test_nerfstudio_errors_name_file_and_field(tmp_path: Path, edit, field: str, words: str) -> None:
    _png(tmp_path / "a.png")
    meta = {"fl_x": 5.0, "w": 8, "h": 6,
            "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}] * 2}
    meta["frames"] = [dict(f) for f in meta["frames"]]
    edit(meta)
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(meta))
    with pytest.raises(SceneError) as info:
        read_nerfstudio(path)
    assert str(info.value).startswith(f"{path}: {field}: ") and words in str(info.value), str(info.value)


def test_nerfstudio_needs_indices_for_many_frames(tmp_path: Path) -> None:
    K, c2w = _random_cameras(3)
    frames = [Frame(_png(tmp_path / f"{i}.png"), 8, 6, 5.0, 5.0, 4.0, 3.0, m.numpy()) for i, m in enumerate(c2w)]
    path = save_nerfstudio(frames, tmp_path / "transforms.json")
    with pytest.raises(SceneError, match="choose 1 or 2 with indices"):
        import_nerfstudio(path)
    assert len(import_nerfstudio(path, indices=[2]).frames) == 1


def test_cameras_npz_errors(tmp_path: Path) -> None:
    path = tmp_path / "cameras.npz"
    np.savez(path, world_mat_0=np.eye(4), world_mat_1=np.zeros((4, 4)))
    with pytest.raises(SceneError, match=r"cameras.npz: world_mat_2: missing"):
        read_cameras_npz(path, [2])
    with pytest.raises(SceneError, match=r"cameras.npz: world_mat_1: .*singular"):
        read_cameras_npz(path)
    skewed = np.eye(4)
    skewed[0, 1] = 0.5
    np.savez(path, world_mat_0=skewed)
    with pytest.raises(SceneError, match=r"world_mat_0: intrinsics have skew"):
        read_cameras_npz(path)


def _ncc_maps(image: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """Normalised cross-correlation of square ``templates [N, k, k]`` at every position of ``image [H, W]``."""
    k = templates.shape[-1]
    t = templates - templates.mean((1, 2), keepdim=True)
    t = t / t.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    x, box = image[None, None], torch.ones(1, 1, k, k, dtype=image.dtype)
    s1, s2 = F.conv2d(x, box), F.conv2d(x * x, box)
    var = (s2 - s1 * s1 / k**2).clamp_min(1e-4 * k**2)  # floor: flat (white) areas never match
    return (F.conv2d(x, t[:, None]) / var.sqrt())[0]


def _patches(image: torch.Tensor, xy: torch.Tensor, half: int) -> torch.Tensor:
    offsets = torch.arange(-half, half + 1)
    return image[(xy[:, 1, None, None] + offsets[:, None]), (xy[:, 0, None, None] + offsets)]


def _match(a: torch.Tensor, b: torch.Tensor, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Match pixels ``xy`` of grey image ``a`` in ``b`` without using cameras (global search at half resolution,
    then +-3 px refinement at full resolution); returns matched xy and a keep mask (distinct, high NCC)."""
    a2, b2 = F.avg_pool2d(a[None, None], 2)[0, 0], F.avg_pool2d(b[None, None], 2)[0, 0]
    half = 5
    maps = _ncc_maps(b2, _patches(a2, xy // 2, half))  # [N, h', w']
    best, idx = maps.flatten(1).max(1)
    coarse = torch.stack([idx % maps.shape[2], idx // maps.shape[2]], 1) + half
    rows, cols = torch.arange(maps.shape[1]), torch.arange(maps.shape[2])
    near = ((rows[:, None] - coarse[:, 1, None, None] + half).abs() <= 3) & (
        (cols - coarse[:, 0, None, None] + half).abs() <= 3
    )
    second = maps.masked_fill(near, -1.0).flatten(1).amax(1)
    out, ok = [], []
    for p, c in zip(xy, coarse * 2):  # refinement: a few dozen tiny windows
        tpl = _patches(a, p[None], 7)
        win = b[c[1] - 10 : c[1] + 11, c[0] - 10 : c[0] + 11]
        if win.shape != (21, 21):
            out.append(c), ok.append(False)
            continue
        m = _ncc_maps(win, tpl)[0]
        j = int(m.argmax())
        out.append(c + torch.tensor([j % 7 - 3, j // 7 - 3])), ok.append(bool(m.max() > 0.8))
    keep = (best > 0.8) & (second < best - 0.05) & torch.tensor(ok)
    return torch.stack(out), keep


def _epipolar_px(K: torch.Tensor, c2w: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Distance (px) of x1 in view 1 to the epipolar lines of x0 from view 0."""
    rel = torch.linalg.inv(c2w[1]) @ c2w[0]  # camera 0 -> camera 1
    R, t = rel[:3, :3], rel[:3, 3]
    tx = torch.tensor([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]], dtype=torch.float64)
    Fm = torch.linalg.inv(K[1]).T @ tx @ R @ torch.linalg.inv(K[0])
    h0 = torch.cat([x0 + 0.5, torch.ones(len(x0), 1, dtype=torch.float64)], 1)  # pixel centres
    h1 = torch.cat([x1 + 0.5, torch.ones(len(x1), 1, dtype=torch.float64)], 1)
    lines = h0 @ Fm.T
    return (lines * h1).sum(1).abs() / lines[:, :2].norm(dim=1)


@pytest.mark.skipif(not (DTU / "cameras.npz").exists(), reason="DTU scan24 sample data not present")
def test_dtu_crop_fix_gives_small_epipolar_error() -> None:
    views = [4, 5]  # the closest pair of cameras (11 degrees apart)
    images = [DTU / f"{i:06d}_rgb.png" for i in views]
    scene = import_cameras_npz(DTU / "cameras.npz", images, views, pixel_transform=DTU_CROP_FIX)
    assert (scene.frames[0].width, scene.frames[0].height) == (384, 384)
    grey = scene.load_images().mean(1).double()
    ys, xs = torch.meshgrid(torch.arange(40, 345, 8), torch.arange(40, 345, 8), indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten()], 1)
    texture = F.avg_pool2d(grey[:1, None] ** 2, 15, 1, 7) - F.avg_pool2d(grey[:1, None], 15, 1, 7) ** 2
    x0 = grid[texture[0, 0][grid[:, 1], grid[:, 0]].topk(100).indices]
    x1, keep = _match(grey[0], grey[1], x0)
    assert keep.sum() >= 8, int(keep.sum())
    x0, x1 = x0[keep].double(), x1[keep].double()
    with_fix = _epipolar_px(scene.K.double(), scene.c2w.double(), x0, x1).median()
    no_crop = DTU_CROP_FIX.copy()
    no_crop[0, 2] = 0.0
    K_bad, c2w_bad = read_cameras_npz(DTU / "cameras.npz", views, pixel_transform=no_crop)
    without_fix = _epipolar_px(K_bad, c2w_bad, x0, x1).median()
    print(f"epipolar median: {float(with_fix):.3f} px with crop fix, {float(without_fix):.3f} px without, {int(keep.sum())} matches")
    assert with_fix < 1.0, float(with_fix)
    assert without_fix > 2 * with_fix, (float(with_fix), float(without_fix))
