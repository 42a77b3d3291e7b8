"""Procedural renderer, scene generator, sharded dataset and sample Dataset."""

import json
import shutil

import numpy as np
import pytest
import torch
import trimesh

from cameo.cameras import look_at, project_points, unproject_depth
from cameo.data.dataset import ProceduralDataset
from cameo.data.primitives import Box, Plane, Sphere, TriangleMesh
from cameo.data.procedural import generate_scene
from cameo.data.render import SceneSpec, render_views
from cameo.data.shards import DatasetConfig, generate_dataset
from cameo.data.textures import random_texture


def _cameras(n: int = 3, res: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    ang = torch.linspace(0, 2.0, n)
    eye = torch.stack([3 * torch.cos(ang), 3 * torch.sin(ang), torch.full_like(ang, 1.5)], 1)
    c2w = look_at(eye, torch.zeros(n, 3), torch.tensor([0.0, 0.0, 1.0]))
    K = torch.tensor([[res, 0, res / 2], [0, res, res / 2], [0, 0, 1.0]]).expand(n, 3, 3)
    return c2w, K


def _unprojected(scene: SceneSpec, res: int = 32) -> torch.Tensor:
    c2w, K = _cameras(res=res)
    _, depth = render_views(scene, c2w, K, res, res, supersample=1)
    return unproject_depth(depth, K, c2w).reshape(-1, 3)


def test_depth_is_exact_on_analytic_surfaces():
    tex = [random_texture(np.random.default_rng(0))]
    sphere = _unprojected(SceneSpec([Sphere(tex, (0.0, 0.0, 0.0), 0.8)]))
    sphere = sphere[torch.isfinite(sphere).all(1)]
    assert len(sphere) > 100
    assert torch.allclose(sphere.norm(dim=1), torch.tensor(0.8), atol=2e-5)

    box = _unprojected(SceneSpec([Box(tex, (0.1, 0.0, 0.2), (0.5, 0.7, 0.3))]))
    box = box[torch.isfinite(box).all(1)]
    scaled = ((box - torch.tensor([0.1, 0.0, 0.2])).abs() / torch.tensor([0.5, 0.7, 0.3])).amax(1)
    assert len(box) > 100 and torch.allclose(scaled, torch.ones_like(scaled), atol=1e-4)

    mesh = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    pts = _unprojected(SceneSpec([TriangleMesh.from_trimesh(mesh, tex)]))
    pts = pts[torch.isfinite(pts).all(1)]
    scaled = (pts.abs() / torch.tensor([0.5, 0.3, 0.2])).amax(1)
    assert len(pts) > 100 and torch.allclose(scaled, torch.ones_like(scaled), atol=1e-4)

    ground = _unprojected(SceneSpec([Plane(tex)]))
    ground = ground[torch.isfinite(ground).all(1)]
    assert len(ground) > 100 and ground[:, 2].abs().max() < 1e-4


def test_depth_is_consistent_across_views():
    scene = generate_scene("room", seed=3, index=0, views=4, resolution=32, supersample=1)
    depth, K, c2w = (torch.from_numpy(a) for a in (scene.depth, scene.K, scene.c2w))
    pts = unproject_depth(depth[0], K[0], c2w[0]).reshape(-1, 3)
    uv, z = project_points(pts, K[1], c2w[1])
    inside = (uv >= 0.5).all(1) & (uv < 31.5).all(1) & (z > 0)
    # A point projected exactly onto a pixel centre of view 1 must have that pixel's depth unless occluded.
    col, row = (uv[inside] - 0.5).round().long().unbind(1)
    exact = ((uv[inside] - 0.5) - (uv[inside] - 0.5).round()).abs().amax(1) < 1e-3
    ratio = (depth[1][row, col] - z[inside]).abs() / z[inside]
    # Some points land near pixel centres; on flat room walls their depths agree to float precision.
    assert (ratio < 0.02).float().mean() > 0.5
    if exact.any():
        assert (ratio[exact] < 1e-4).float().mean() > 0.5


def test_scenes_are_reproducible_and_splits_differ():
    a = generate_scene("object", seed=1, index=5, views=3, resolution=24)
    b = generate_scene("object", seed=1, index=5, views=3, resolution=24)
    c = generate_scene("object", seed=1, index=6, views=3, resolution=24)
    d = generate_scene("object", seed=1, index=5, views=3, resolution=24, split="demo")
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth, equal_nan=True)
    assert not np.array_equal(a.rgb, c.rgb) and not np.array_equal(a.rgb, d.rgb)
    assert a.rgb.shape == (3, 24, 24, 3) and a.rgb.dtype == np.uint8 and a.depth.dtype == np.float32
    assert np.isfinite(a.depth).any()
    room = generate_scene("room", seed=1, index=5, views=3, resolution=24)
    assert np.isfinite(room.depth).all()  # rooms are closed


def test_user_mesh_files_are_rendered(tmp_path):
    path = tmp_path / "asset.ply"
    trimesh.creation.torus(major_radius=1.0, minor_radius=0.3).export(path)
    scenes = [generate_scene("object", 0, i, 2, 24, meshes=(str(path),)) for i in range(4)]
    assert all(np.isfinite(s.depth).any() for s in scenes)
    bad = tmp_path / "broken.obj"
    bad.write_text("not a mesh\n")
    with pytest.raises(ValueError, match="broken.obj"):
        for i in range(10):
            generate_scene("object", 0, i, 2, 16, meshes=(str(bad),))


def test_sharded_dataset_resumes_and_matches_parallel(tmp_path):
    cfg = DatasetConfig(kind="object", num_scenes=5, views=5, resolution=16, shard_size=2, supersample=1)
    generate_dataset(tmp_path / "a", cfg, workers=1, progress=False)
    generate_dataset(tmp_path / "b", cfg, workers=2, progress=False)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["complete"] and [s["count"] for s in manifest["shards"]] == [2, 2, 1]
    for shard in ("shard_00000", "shard_00002"):
        for f in ("rgb.npy", "depth.npy", "c2w.npy"):
            assert np.array_equal(np.load(tmp_path / "a" / shard / f), np.load(tmp_path / "b" / shard / f),
                                  equal_nan=True)
    kept = (tmp_path / "a" / "shard_00000" / "rgb.npy").stat().st_mtime_ns
    reference = np.load(tmp_path / "a" / "shard_00001" / "rgb.npy")
    shutil.rmtree(tmp_path / "a" / "shard_00001")
    generate_dataset(tmp_path / "a", cfg, workers=1, progress=False)
    assert (tmp_path / "a" / "shard_00000" / "rgb.npy").stat().st_mtime_ns == kept  # skipped
    assert np.array_equal(np.load(tmp_path / "a" / "shard_00001" / "rgb.npy"), reference)  # regenerated
    with pytest.raises(ValueError, match="manifest.json"):
        generate_dataset(tmp_path / "a", DatasetConfig(kind="object", num_scenes=6, resolution=16), progress=False)


def test_dataset_yields_contract_samples(tmp_path):
    cfg = DatasetConfig(kind="room", num_scenes=3, views=6, resolution=16, shard_size=2, supersample=1)
    generate_dataset(tmp_path, cfg, progress=False)
    ds = ProceduralDataset(tmp_path, num_views=4)
    assert len(ds) == 3
    s = ds[2]
    assert s["images"].shape == (4, 3, 16, 16) and 0 <= s["images"].min() and s["images"].max() <= 1
    assert s["K"].shape == (4, 3, 3) and s["c2w"].shape == (4, 4, 4) and s["depth"].shape == (4, 16, 16)
    assert s["pointmaps"].shape == (4, 3, 16, 16) and s["scene_id"] == "train-room-0-0000002"
    refs = int(s["ref_mask"].sum())
    assert 1 <= refs <= 3 and s["ref_mask"][:refs].all()
    # Pointmaps project back onto their own pixel centres.
    uv, _ = project_points(s["pointmaps"][1].flatten(1).T, s["K"][1], s["c2w"][1])
    assert torch.allclose(uv[0], torch.tensor([0.5, 0.5]), atol=1e-3)
    assert torch.equal(ds[2]["images"], s["images"])  # deterministic per (seed, epoch, index)
    ds.set_epoch(1)
    assert not all(torch.equal(ds[i]["c2w"], ProceduralDataset(tmp_path)[i]["c2w"]) for i in range(3))
    small = ProceduralDataset(tmp_path, resolution=8)[0]
    assert small["images"].shape == (4, 3, 8, 8) and small["pointmaps"].shape == (4, 3, 8, 8)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        ProceduralDataset(tmp_path / "missing")
