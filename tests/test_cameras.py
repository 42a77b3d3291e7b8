"""Camera utilities: conventions, Plücker rays, normalisation and resizing."""

import math

import pytest
import torch

from cameo import cameras as cam


def random_c2w(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(n, 3, 3)
    T = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    T[:, :3, :3] = R
    T[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64) * 3
    return T


def intrinsics(f: float, w: int, h: int) -> torch.Tensor:
    return torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=torch.float64)


def test_pixel_centers_are_half_offset():
    uv = cam.pixel_centers(2, 3)
    assert uv.shape == (2, 3, 2)
    assert torch.equal(uv[0, 0], torch.tensor([0.5, 0.5]))
    assert torch.equal(uv[1, 2], torch.tensor([2.5, 1.5]))


def test_project_unproject_round_trip():
    c2w = random_c2w(3)
    K = intrinsics(50.0, 64, 48).expand(3, 3, 3)
    depth = torch.rand(3, 48, 64, dtype=torch.float64) * 4 + 1
    pts = cam.unproject_depth(depth, K, c2w)
    uv, z = cam.project_points(pts.reshape(3, -1, 3), K, c2w)
    assert torch.allclose(z, depth.reshape(3, -1), atol=1e-9)
    assert torch.allclose(uv, cam.pixel_centers(48, 64, dtype=torch.float64).reshape(1, -1, 2), atol=1e-9)


def test_plucker_ray_contains_projected_point():
    """A 3D point that projects onto a pixel centre lies on that pixel's Plücker line: p x d = m."""
    c2w = random_c2w(2, seed=1)
    K = intrinsics(40.0, 32, 24).expand(2, 3, 3)
    rays = cam.plucker_rays(c2w, K, 24, 32)
    assert rays.shape == (2, 6, 24, 32)
    d, m = rays[:, :3], rays[:, 3:]
    assert torch.allclose(d.norm(dim=1), torch.ones(2, 24, 32, dtype=torch.float64))
    depth = torch.rand(2, 24, 32, dtype=torch.float64) * 5 + 0.5
    p = cam.unproject_depth(depth, K, c2w).movedim(-1, 1)  # [2, 3, H, W]
    assert torch.allclose(torch.cross(p, d, dim=1), m, atol=1e-9)
    # The moment is orthogonal to the direction (a valid Plücker line).
    assert torch.allclose((d * m).sum(1), torch.zeros(2, 24, 32, dtype=torch.float64), atol=1e-9)


def test_plucker_at_other_resolution_uses_scaled_intrinsics():
    c2w = random_c2w(1, seed=2)
    K = intrinsics(64.0, 64, 64)
    full = cam.plucker_rays(c2w, K, 64, 64)
    half = cam.plucker_rays(c2w, cam.scale_intrinsics(K, 0.5, 0.5), 32, 32)
    # A half-resolution pixel centre (j + 0.5) / 0.5 = 2j + 1 lies between full-res centres 2j+0.5 and 2j+1.5.
    avg = torch.nn.functional.avg_pool2d(full[:, :3], 2)
    assert torch.allclose(half[:, :3], avg / avg.norm(dim=1, keepdim=True), atol=1e-3)


def test_normalization_round_trip_and_properties():
    c2w = random_c2w(5, seed=3)
    c2w_n, norm = cam.normalize_cameras(c2w, ref=1)
    assert torch.allclose(c2w_n[1], torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert math.isclose(c2w_n[:, :3, 3].norm(dim=-1).max().item(), 1.0, rel_tol=1e-12)
    assert torch.allclose(norm.apply_c2w(c2w), c2w_n, atol=1e-12)
    assert torch.allclose(norm.invert_c2w(c2w_n), c2w, atol=1e-12)
    pts = torch.randn(7, 3, dtype=torch.float64)
    assert torch.allclose(norm.invert_points(norm.apply_points(pts)), pts, atol=1e-12)
    # Projections are unchanged by the similarity transform (up to depth scale).
    K = intrinsics(30.0, 32, 32)
    uv_a, z_a = cam.project_points(pts, K, c2w[2])
    uv_b, z_b = cam.project_points(norm.apply_points(pts), K, c2w_n[2])
    assert torch.allclose(uv_a, uv_b, atol=1e-9)
    assert torch.allclose(z_a * norm.scale, z_b, atol=1e-9)


def test_batched_normalization_matches_per_scene():
    c2w = torch.stack([random_c2w(4, seed=s) for s in range(3)])  # [B=3, V=4, 4, 4]
    c2w_n, norm = cam.normalize_cameras(c2w)
    assert norm.scale.shape == (3,)
    for b in range(3):
        single, _ = cam.normalize_cameras(c2w[b])
        assert torch.allclose(c2w_n[b], single, atol=1e-12)
    pts = torch.randn(3, 10, 3, dtype=torch.float64)
    assert torch.allclose(norm.invert_points(norm.apply_points(pts)), pts, atol=1e-12)
    assert torch.allclose(norm.invert_c2w(c2w_n), c2w, atol=1e-12)


def test_normalization_of_coincident_cameras_keeps_scale_one():
    c2w = random_c2w(1).repeat(2, 1, 1)
    _, norm = cam.normalize_cameras(c2w)
    assert norm.scale.item() == 1.0


def test_resize_and_crop_keep_projection_consistent():
    c2w = random_c2w(1, seed=4)[0]
    K = intrinsics(80.0, 64, 48)
    img = torch.rand(3, 48, 64)
    small, K_small = cam.resize_with_intrinsics(img, K, (24, 32))
    assert small.shape == (3, 24, 32)
    pts = torch.randn(20, 3, dtype=torch.float64) + c2w[:3, 3] + 5 * c2w[:3, 2]
    uv, _ = cam.project_points(pts, K, c2w)
    uv_small, _ = cam.project_points(pts, K_small, c2w)
    assert torch.allclose(uv_small, uv * 0.5, atol=1e-9)
    crop, K_crop = cam.center_crop_with_intrinsics(img, K, (40, 40))
    assert crop.shape == (3, 40, 40)
    assert torch.equal(crop, img[:, 4:44, 12:52])
    uv_crop, _ = cam.project_points(pts, K_crop, c2w)
    assert torch.allclose(uv_crop, uv - torch.tensor([12.0, 4.0], dtype=torch.float64), atol=1e-9)
    with pytest.raises(ValueError):
        cam.center_crop_with_intrinsics(img, K, (50, 50))


def test_look_at_opencv_axes():
    eye = torch.tensor([0.0, 0.0, -2.0], dtype=torch.float64)
    target = torch.zeros(3, dtype=torch.float64)
    up = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)  # world "up" is -y, as in an OpenCV camera
    c2w = cam.look_at(eye, target, up)
    expected = torch.eye(4, dtype=torch.float64)
    expected[:3, 3] = eye
    assert torch.allclose(c2w, expected, atol=1e-12)
    # The target projects to the principal point.
    K = intrinsics(10.0, 20, 20)
    uv, z = cam.project_points(target[None], K, c2w)
    assert torch.allclose(uv[0], torch.tensor([10.0, 10.0], dtype=torch.float64))
    assert z.item() == pytest.approx(2.0)
    with pytest.raises(ValueError):
        cam.look_at(eye, target, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_relative_to_reference_and_inverse():
    c2w = random_c2w(3, seed=5)
    rel = cam.relative_to_reference(c2w, ref=2)
    assert torch.allclose(rel[2], torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(cam.invert_pose(c2w) @ c2w, torch.eye(4, dtype=torch.float64).expand(3, 4, 4), atol=1e-12)


def test_up_direction_is_level_cameras_up_whatever_their_pitch() -> None:
    """Two roll-free cameras at different headings and pitches: up is the normal of their x axes, not the mean of
    their (pitched) y axes; with parallel x axes the mean up axis breaks the tie."""
    up = torch.tensor([0.0, 0.0, 1.0])
    eyes = torch.tensor([[2.0, 0.0, 2.0], [0.0, 2.0, 0.5]])
    c2w = cam.look_at(eyes, torch.zeros(2, 3), up)
    assert torch.allclose(cam.up_direction(c2w), up, atol=1e-5)
    flipped = cam.look_at(eyes, torch.zeros(2, 3), -up)  # OpenCV y points down: the sign follows the cameras' up
    assert torch.allclose(cam.up_direction(flipped), -up, atol=1e-5)
    level = cam.look_at(torch.tensor([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]]), torch.zeros(2, 3), up)
    assert torch.allclose(cam.up_direction(level), up, atol=1e-5)


def test_sampling_grid_reads_pixel_centres_and_sends_nan_outside():
    from cameo.cameras import sampling_grid

    image = torch.arange(12.0).reshape(1, 1, 3, 4)
    uv = torch.tensor([[0.5, 0.5], [3.5, 2.5], [1.5, 1.0], [float("nan"), 1.0]])
    grid = sampling_grid(uv, 3, 4)
    got = torch.nn.functional.grid_sample(image, grid.reshape(1, 1, -1, 2), align_corners=False)[0, 0, 0]
    torch.testing.assert_close(got[:3], torch.tensor([0.0, 11.0, 3.0]))  # the third: between rows 0 and 1 of column 1
    assert got[3] == 0 and grid[3, 0] == -3.0  # NaN lands outside: zero padding
