"""Real-dataset loaders on tiny files written by the tests, checked against known cameras and depth."""

import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cameo.cameras import invert_pose, look_at, project_points, unproject_depth
from cameo.data.loaders import co3d, dtu, nerfstudio, realestate10k
from cameo.data.pointmaps import VGGTPointmaps

H, W = 24, 32


def _cameras(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    ang = torch.linspace(0.0, 1.2, n, dtype=torch.float64)
    eye = torch.stack([3 * torch.cos(ang), 3 * torch.sin(ang), 1 + 0.2 * ang], 1)
    c2w = look_at(eye, torch.zeros(n, 3, dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    K = torch.tensor([[30.0, 0, 15.0], [0, 28.0, 12.5], [0, 0, 1]], dtype=torch.float64).expand(n, 3, 3)
    return K, c2w


def _write_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / name)


def test_realestate10k_reads_normalised_intrinsics_and_w2c(tmp_path):
    K, c2w = _cameras()
    w2c = invert_pose(c2w)
    lines = ["https://www.youtube.com/watch?v=xyz"]
    for i in range(4):
        k = K[i]
        vals = [k[0, 0] / W, k[1, 1] / H, k[0, 2] / W, k[1, 2] / H, 0, 0, *w2c[i, :3].reshape(-1).tolist()]
        lines.append(" ".join([str(1000 * i)] + [f"{float(v):.10f}" for v in vals]))
    (tmp_path / "seq1.txt").write_text("\n".join(lines) + "\n")
    _write_images(tmp_path / "seq1", [f"{1000 * i}.png" for i in (0, 1, 3)])  # frame 2 missing: skipped
    (seq,) = realestate10k.read_sequences(tmp_path)
    assert [p.name for p in seq.images] == ["0.png", "1000.png", "3000.png"]
    assert torch.allclose(seq.K, K[[0, 1, 3]], atol=1e-6) and torch.allclose(seq.c2w, c2w[[0, 1, 3]], atol=1e-7)
    ds = realestate10k.open_dataset(tmp_path, num_views=3, resolution=16)
    s = ds[0]
    assert s["images"].shape == (3, 3, 16, 16) and "pointmaps" not in s
    (tmp_path / "seq1.txt").write_text(lines[0] + "\n0 1 2\n")
    with pytest.raises(ValueError, match="seq1.txt: line 2"):
        realestate10k.read_sequences(tmp_path)


def _to_co3d_viewpoint(k, c2w, fmt="ndc_isotropic"):
    """The inverse of the documented conversion, written independently in PyTorch3D terms."""
    flip = np.diag([-1.0, -1.0, 1.0])
    w2c = np.linalg.inv(c2w)
    R = (flip @ w2c[:3, :3]).T  # X_cam_p3d = X_world @ R + T
    T = flip @ w2c[:3, 3]
    s = min(W, H) / 2
    return {"R": R.tolist(), "T": T.tolist(), "focal_length": [k[0, 0] / s, k[1, 1] / s],
            "principal_point": [(W / 2 - k[0, 2]) / s, (H / 2 - k[1, 2]) / s], "intrinsics_format": fmt}


def test_co3d_cameras_and_depth(tmp_path):
    K, c2w = _cameras()
    cat = tmp_path / "apple"
    _write_images(cat / "seq_a" / "images", [f"frame{i:06d}.jpg" for i in range(4)])
    (cat / "seq_a" / "depths").mkdir()
    depth = np.full((H, W), 2.5, dtype=np.float16)
    depth[0, :5] = 0  # invalid
    frames = []
    for i in range(4):
        Image.fromarray(depth.view(np.uint16)).save(cat / "seq_a" / "depths" / f"frame{i:06d}.png")
        frames.append({
            "sequence_name": "seq_a", "frame_number": 3 - i if i < 4 else i, "frame_timestamp": 0.1 * i,
            "image": {"path": f"apple/seq_a/images/frame{3 - i:06d}.jpg", "size": [H, W]},
            "depth": {"path": f"apple/seq_a/depths/frame{3 - i:06d}.png", "scale_adjustment": 2.0},
            "viewpoint": _to_co3d_viewpoint(K[3 - i].numpy(), c2w[3 - i].numpy()),
        })
    with gzip.open(cat / "frame_annotations.jgz", "wt") as fh:
        json.dump(frames, fh)
    (seq,) = co3d.read_sequences(tmp_path)
    assert torch.allclose(seq.K, K, atol=1e-9) and torch.allclose(seq.c2w, c2w, atol=1e-9)
    # Independent check with PyTorch3D's own projection: NDC = f * X/Z + p (+x left, +y up).
    X = np.array([[0.2, -0.1, 0.3]])
    vp = frames[0]["viewpoint"]
    cam = X @ np.array(vp["R"]) + np.array(vp["T"])
    ndc = np.array(vp["focal_length"]) * cam[:, :2] / cam[:, 2:] + np.array(vp["principal_point"])
    pix = np.array([W / 2, H / 2]) - ndc * min(W, H) / 2
    uv, _ = project_points(torch.tensor(X), seq.K[3], seq.c2w[3])
    assert np.allclose(uv.numpy(), pix, atol=1e-9)
    d = seq.read_depth(seq.depths[0], 0)
    assert np.isnan(d[0, :5]).all() and np.allclose(d[1:], 5.0)
    s = co3d.open_dataset(cat, num_views=2, resolution=H)[0]
    assert s["pointmaps"].shape == (2, 3, H, H) and torch.isfinite(s["pointmaps"][:, :, 1:]).all()


def test_dtu_idr_cameras_npz(tmp_path):
    K, c2w = _cameras(3)
    scan = tmp_path / "scan1"
    _write_images(scan / "image", [f"{i:06d}.png" for i in range(3)])
    scale = np.diag([2.0, 2.0, 2.0, 1.0])
    scale[:3, 3] = [0.1, 0.2, 0.3]
    data = {}
    for i in range(3):
        P = np.eye(4)
        P[:3] = K[i].numpy() @ invert_pose(c2w[i]).numpy()[:3]
        data[f"world_mat_{i}"], data[f"scale_mat_{i}"] = P, scale
    np.savez(scan / "cameras.npz", **data)
    (seq,) = dtu.read_sequences(tmp_path)
    Xn = torch.tensor([[0.1, 0.2, -0.3]], dtype=torch.float64)  # normalised (unit-sphere) frame
    Xw = Xn @ torch.tensor(scale[:3, :3]).T + torch.tensor(scale[:3, 3])
    for i in range(3):
        assert torch.allclose(project_points(Xn, seq.K[i], seq.c2w[i])[0], project_points(Xw, K[i], c2w[i])[0],
                              atol=1e-6)
    assert dtu.open_dataset(scan, num_views=2, resolution=16)[0]["images"].shape == (2, 3, 16, 16)


def test_nerfstudio_folder(tmp_path):
    K, c2w = _cameras(3)
    _write_images(tmp_path / "images", [f"{i}.png" for i in range(3)])
    gl = c2w @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    meta = {"fl_x": 30.0, "fl_y": 28.0, "cx": 15.0, "cy": 12.5, "w": W, "h": H,
            "frames": [{"file_path": f"images/{i}.png", "transform_matrix": gl[i].tolist()} for i in range(3)]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    (seq,) = nerfstudio.read_sequences(tmp_path)
    assert torch.allclose(seq.c2w, c2w, atol=1e-9) and torch.allclose(seq.K, K, atol=1e-9)


class _StubVGGT:
    """Same output interface as VGGT: world points in camera 0's frame at an arbitrary scale (here 1/3)."""

    def __init__(self, depth, K, c2w):
        self.depth, self.K, self.c2w = depth, K, c2w

    def __call__(self, x):
        f, _, h, w = x.shape
        assert w == 518 and h % 14 == 0
        Ks = self.K.clone()
        Ks[:, 0] *= w / self.depth.shape[-1]
        Ks[:, 1] *= h / self.depth.shape[-2]
        d = torch.nn.functional.interpolate(self.depth[:, None], size=(h, w), mode="bilinear")[:, 0]
        world = unproject_depth(d, Ks, self.c2w)
        cam0 = (world - self.c2w[0, :3, 3]) @ self.c2w[0, :3, :3]
        return {"world_points": cam0[None] / 3.0, "world_points_conf": torch.ones(1, f, h, w)}


def test_vggt_source_plumbing_with_a_stub(tmp_path):
    K, c2w = (t.float() for t in _cameras(3))
    depth = torch.full((3, H, W), 4.0)
    source = VGGTPointmaps(_StubVGGT(depth, K, c2w))
    pm = source(torch.rand(3, 3, H, W), K, c2w, None)
    expected = unproject_depth(depth, K, c2w).permute(0, 3, 1, 2)
    assert pm.shape == (3, 3, H, W)
    assert (pm - expected).norm(dim=1).median() < 0.05  # scale recovered, frame moved to the world
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        VGGTPointmaps.from_checkpoint(tmp_path / "missing.pt")
