"""Camera paths: exact ends, smoothness, orthonormal rotations, look-at behaviour, mode choice, errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from cameo.cameras import look_at
from cameo.scene import SceneError
from trajectories.paths import (
    choose_two_view_mode,
    optical_axes_meeting_point,
    scene_path,
    single_view_path,
    two_view_path,
)

UP = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def _K(f: float = 100.0) -> torch.Tensor:
    return torch.tensor([[f, 0, 32], [0, f, 24], [0, 0, 1]], dtype=torch.float64)


def _object_pair(deg: float = 80.0, r0: float = 3.0, r1: float = 4.0) -> torch.Tensor:
    """Two cameras looking at the origin from directions ``deg`` apart (an object-centric capture)."""
    a = math.radians(deg)
    eye = torch.tensor([[r0, 0.0, 1.0], [r1 * math.cos(a), r1 * math.sin(a), 1.5]], dtype=torch.float64)
    return look_at(eye, torch.zeros(2, 3, dtype=torch.float64), UP)


def _assert_rotations_valid(c2w: torch.Tensor) -> None:
    R = c2w[:, :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    assert torch.allclose(R.transpose(-1, -2) @ R, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(R), dtype=torch.float64), atol=1e-5)
    quats = torch.from_numpy(Rotation.from_matrix(R.numpy()).as_quat())
    assert torch.allclose(quats.norm(dim=1), torch.ones(len(R), dtype=torch.float64), atol=1e-9)
    assert torch.equal(c2w[:, 3], torch.tensor([0.0, 0, 0, 1], dtype=c2w.dtype).expand(len(c2w), 4))


def _step_stats(c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First differences of centres, second differences, and rotation angle between consecutive poses."""
    c = c2w[:, :3, 3].double()
    first = (c[1:] - c[:-1]).norm(dim=1)
    second = (c[2:] - 2 * c[1:-1] + c[:-2]).norm(dim=1)
    R = c2w[:, :3, :3].double()
    rel = R[:-1].transpose(-1, -2) @ R[1:]
    angle = torch.acos(((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    return first, second, angle


@pytest.mark.parametrize("mode", ["linear", "orbit"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_two_view_ends_exact_and_smooth(mode: str, dtype: torch.dtype) -> None:
    c2w = _object_pair().to(dtype)
    K = torch.stack([_K(100.0), _K(140.0)]).to(dtype)
    path = two_view_path(c2w, K, n_targets=98, mode=mode)
    assert len(path) == 100 and path.input_indices == (0, 99) and path.target_indices == tuple(range(1, 99))
    assert path.c2w.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(path.c2w[0], c2w[0], atol=tol) and torch.allclose(path.c2w[-1], c2w[1], atol=tol)
    assert torch.allclose(path.K[[0, -1]], K, atol=tol)
    assert torch.allclose(path.K[49, 0, 0], torch.tensor(100.0 + 40 * 49 / 99, dtype=dtype))
    _assert_rotations_valid(path.c2w)
    first, second, angle = _step_stats(path.c2w)
    assert second.max() <= 0.05 * first.mean()  # bounded curvature: ~ step * turn per step for the arc
    radius_growth = 1.0 if mode == "linear" else math.hypot(4, 1.5) / math.hypot(3, 1)  # orbit radius r0 -> r1
    assert first.max() <= 1.2 * radius_growth * first.min()  # near constant speed
    assert angle.max() <= 1.2 * angle.min() + 1e-7


def test_orbit_keeps_looking_at_the_triangulated_point() -> None:
    c2w = _object_pair(deg=120.0)
    path = two_view_path(c2w, torch.stack([_K(), _K()]), n_targets=30, mode="orbit")
    to_origin = torch.nn.functional.normalize(-path.c2w[:, :3, 3], dim=1)
    assert torch.allclose((to_origin * path.c2w[:, :3, 2]).sum(1), torch.ones(32, dtype=torch.float64), atol=1e-9)
    radius = path.c2w[:, :3, 3].norm(dim=1)
    r0, r1 = radius[0], radius[-1]
    assert torch.allclose(radius, torch.linspace(float(r0), float(r1), 32, dtype=torch.float64), atol=1e-9)
    linear = two_view_path(c2w, torch.stack([_K(), _K()]), n_targets=30, mode="linear")
    assert linear.c2w[16, :3, 3].norm() < 0.8 * radius[16]  # the chord cuts inside; the orbit does not


def test_auto_mode_choice() -> None:
    assert choose_two_view_mode(_object_pair()) == "orbit"
    point, depths, gap = optical_axes_meeting_point(_object_pair())
    assert torch.allclose(torch.from_numpy(point), torch.zeros(3, dtype=torch.float64), atol=1e-9) and gap < 1e-9
    assert (depths > 0).all()
    forward = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    forward[1, 0, 3] = 0.5  # parallel optical axes (forward-facing rig)
    assert choose_two_view_mode(forward) == "linear"
    diverging = _object_pair()
    diverging[:, :3, 1:3] *= -1  # look away from the object: axes meet behind the cameras
    assert choose_two_view_mode(diverging) == "linear"
    assert two_view_path(forward, torch.stack([_K(), _K()]), 5).mode == "linear"


def test_opposite_cameras_orbit_is_well_defined() -> None:
    eye = torch.tensor([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]], dtype=torch.float64)
    c2w = look_at(eye, torch.zeros(2, 3, dtype=torch.float64), UP)
    assert choose_two_view_mode(c2w) == "orbit"  # parallel axes, but the cameras face each other
    path = two_view_path(c2w, torch.stack([_K(), _K()]), n_targets=9, mode="orbit")
    assert torch.allclose(path.c2w[-1], c2w[1], atol=1e-12)
    assert torch.allclose(path.c2w[:, 2, 3], torch.zeros(11, dtype=torch.float64), atol=1e-9)  # stays horizontal
    _assert_rotations_valid(path.c2w)


def test_two_view_errors() -> None:
    same = _object_pair()[[0, 0]]
    with pytest.raises(SceneError, match="scene.json: frames: the two cameras are identical"):
        two_view_path(same, torch.stack([_K(), _K()]), source="scene.json")
    with pytest.raises(SceneError, match="mode: unknown"):
        two_view_path(_object_pair(), torch.stack([_K(), _K()]), mode="spiral")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["circle", "orbit", "forward", "sideways"])
def test_single_view_paths_start_at_input(kind: str) -> None:
    c2w = _object_pair()[0].float()
    path = single_view_path(c2w, _K().float(), n_targets=40, kind=kind, size=0.2)  # type: ignore[arg-type]
    assert len(path) == 41 and path.input_indices == (0,) and path.c2w.dtype == torch.float32
    assert torch.allclose(path.c2w[0], c2w, atol=1e-6)
    _assert_rotations_valid(path.c2w)
    first, second, _ = _step_stats(path.c2w)
    assert first.min() > 0 and second.max() <= 0.2 * first.mean()
    depth = math.hypot(3.0, 1.0)  # default look-at depth: the origin lies on the input's optical axis
    centres = path.c2w[:, :3, 3].double()
    if kind in ("circle", "orbit"):  # keeps looking at the point `depth` ahead of the input
        target = c2w[:3, 3].double() + depth * c2w[:3, 2].double()
        view = torch.nn.functional.normalize(target - centres, dim=1)
        assert torch.allclose((view * path.c2w[:, :3, 2].double()).sum(1), torch.ones(41, dtype=torch.float64), atol=1e-5)
    reach = (centres - centres[0]).norm(dim=1).max()
    bound = 2 * depth * math.sin(math.pi * 0.2) if kind == "orbit" else 2 * 0.2 * depth
    assert 0.1 * depth < reach <= 1.01 * bound


def test_single_view_size_scales_motion() -> None:
    c2w = _object_pair()[0]
    small = single_view_path(c2w, _K(), 20, "circle", size=0.1)
    big = single_view_path(c2w, _K(), 20, "circle", size=0.3)
    d_small = (small.c2w[:, :3, 3] - c2w[:3, 3]).norm(dim=1).max()
    d_big = (big.c2w[:, :3, 3] - c2w[:3, 3]).norm(dim=1).max()
    assert torch.allclose(d_big, 3 * d_small)
    with pytest.raises(ValueError, match="unknown single-view path kind"):
        single_view_path(c2w, _K(), 5, "zoom")  # type: ignore[arg-type]


def test_scene_path_dispatch(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from cameo.scene import Frame, Scene

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((48, 64, 3), dtype=np.uint8)).save(image)
    pair = _object_pair()
    frames = [Frame(image, 64, 48, 100.0, 100.0, 32.0, 24.0, m.numpy()) for m in pair]
    two = scene_path(Scene(frames, tmp_path / "scene.json"), n_targets=10)
    assert two.mode == "orbit" and len(two) == 12 and torch.allclose(two.c2w[-1].double(), pair[1], atol=1e-6)
    one = scene_path(Scene(frames[:1]), n_targets=10, mode="forward", size=0.1)
    assert one.mode == "forward" and len(one) == 11
    same = Scene([frames[0], frames[0]], tmp_path / "scene.json")
    with pytest.raises(SceneError, match=r"scene.json: frames: the two cameras are identical"):
        scene_path(same)
