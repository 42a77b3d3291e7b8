"""run_reconstruction end to end on an untrained tiny model: plumbing, files, cameras, atomicity (not quality)."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from plyfile import PlyData

from cameo.geometry.cloud import PointCloud
from cameo.importers import opengl_to_opencv
from cameo.model_folder import CameoModel
from cameo.scene import load_scene
from recon import pipeline
from recon.pipeline import ReconError, ReconOptions, run_reconstruction
from tests.pipeline_helpers import MODEL_SIZE, write_tiny_model, write_two_view_scene
from trajectories import scene_path

NUM_VIEWS = 4  # generated views: path of 6 cameras, 3 model calls over two passes with F = 4
OPTIONS = dict(num_views=NUM_VIEWS, steps=2, fit_iterations=2, fit_points=200, device="cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pipeline")
    model_dir = write_tiny_model(root / "model")
    scene = load_scene(write_two_view_scene(root / "scene"))
    return root, model_dir, scene


@pytest.fixture(scope="module")
def result(setup):
    root, model_dir, scene = setup
    events: list[tuple[str, float]] = []
    options = ReconOptions(checkpoint=model_dir, show_progress=False, **OPTIONS)
    res = run_reconstruction(scene, root / "out" / "splat.ply", options, progress=lambda s, f: events.append((s, f)))
    return res, events


def test_ply_has_standard_3dgs_properties(result):
    res, _ = result
    vertex = PlyData.read(str(res.ply))["vertex"]
    names = set(vertex.data.dtype.names)
    expected = {"x", "y", "z", "opacity", *(f"f_dc_{i}" for i in range(3)), *(f"scale_{i}" for i in range(3)),
                *(f"rot_{i}" for i in range(4))}
    assert expected <= names
    assert len(vertex.data) == len(res.splats) > 0
    assert not list(res.ply.parent.glob("*.tmp"))


def test_workdir_files_and_default_location(result):
    res, _ = result
    assert res.workdir == res.ply.with_name("splat_views")
    assert [p.name for p in res.frames] == [f"{i:04d}.png" for i in range(NUM_VIEWS + 2)]
    assert all(p.is_file() for p in res.frames)
    assert iio.imread(res.frames[1]).shape == (MODEL_SIZE, MODEL_SIZE, 3)
    plugin = "pyav" if _has_pyav() else None
    # the fly-through: the Gaussians along the whole path at the inputs' size; the generated views: their own video
    assert res.video == res.workdir / "flythrough.mp4" and res.generated_video == res.workdir / "generated.mp4"
    fly = list(iio.imiter(res.video, plugin=plugin))
    assert len(fly) == NUM_VIEWS + 2 and fly[0].shape == (24, 32, 3)
    assert len(list(iio.imiter(res.generated_video, plugin=plugin))) == NUM_VIEWS


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def test_transforms_match_trajectory(result, setup):
    res, _ = result
    _, _, scene = setup
    meta = json.loads(res.transforms.read_text())
    frames = meta["frames"]
    assert [f["file_path"] for f in frames] == [f"frames/{i:04d}.png" for i in range(NUM_VIEWS + 2)]
    c2w = opengl_to_opencv(np.array([f["transform_matrix"] for f in frames]))
    expected = scene_path(scene, NUM_VIEWS).c2w.double().numpy()
    np.testing.assert_allclose(c2w, expected, atol=1e-5)
    # inputs at the path ends, with their own cameras, at their own size (non-square: 32 x 24, nothing cropped)
    assert res.input_indices == (0, NUM_VIEWS + 1)
    np.testing.assert_allclose(c2w[[0, -1]], scene.c2w.double().numpy(), atol=1e-5)
    assert (frames[0]["w"], frames[0]["h"]) == (32, 24)
    np.testing.assert_allclose([frames[0]["fl_x"], frames[0]["cx"], frames[0]["cy"]], [30.0, 16.0, 12.0], rtol=1e-5)
    # generated views: intrinsics follow the resize (24 -> 16 rows: x 2/3) and the centre crop (32*2/3 = 21 -> 16
    # columns: -2 px) of the model's input
    assert frames[1]["w"] == frames[1]["h"] == MODEL_SIZE
    np.testing.assert_allclose([frames[1]["fl_x"], frames[1]["fl_y"]], [30 * 21 / 32, 20.0], rtol=1e-5)
    np.testing.assert_allclose([frames[1]["cx"], frames[1]["cy"]], [16 * 21 / 32 - 2, 8.0], rtol=1e-5)


def test_input_frames_keep_their_resolution(result, setup):
    res, _ = result
    _, _, scene = setup
    images = scene.load_images()
    for view, index in enumerate(res.input_indices):
        saved = torch.from_numpy(iio.imread(res.frames[index])).permute(2, 0, 1).float() / 255
        assert saved.shape == (3, 24, 32) and (saved - images[view]).abs().max() <= 1 / 255 + 1e-6
        assert torch.equal(res.images[index], images[view])


def test_views_json_names_inputs_and_flythrough_cameras(result, setup):
    res, _ = result
    _, _, scene = setup
    meta = json.loads((res.workdir / "views.json").read_text())
    assert meta["input_frames"] == [0, NUM_VIEWS + 1]
    fly = meta["flythrough"]
    assert (fly["width"], fly["height"]) == (32, 24) and len(fly["c2w"]) == NUM_VIEWS + 2
    np.testing.assert_allclose(fly["c2w"], scene_path(scene, NUM_VIEWS).c2w.numpy(), atol=1e-6)


def test_progress_and_stage_times(result):
    res, events = result
    stages = list(dict.fromkeys(s for s, _ in events))
    assert stages == ["path", "generate", "fit", "export"]
    assert all(0.0 <= f <= 1.0 for _, f in events)
    assert {s: f for s, f in events} == dict.fromkeys(stages, 1.0)
    assert set(res.stage_seconds) == {"load", "path", "geometry", "generate", "views", "fit", "video", "export"}
    assert all(t >= 0 for t in res.stage_seconds.values())


def test_failing_fit_leaves_no_ply(setup, monkeypatch, tmp_path):
    _, model_dir, scene = setup

    def broken_fit(*args, **kwargs):
        raise RuntimeError("fit exploded")

    monkeypatch.setattr(pipeline, "fit_gaussians", broken_fit)
    out = tmp_path / "splat.ply"
    options = ReconOptions(checkpoint=model_dir, show_progress=False, write_video=False, **OPTIONS)
    with pytest.raises(RuntimeError, match="fit exploded"):
        run_reconstruction(scene, out, options, pretrained=CameoModel.from_pretrained(model_dir, "cpu"))
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".ply", ".tmp")]


def test_bad_options_and_missing_model_write_nothing(setup, tmp_path):
    _, model_dir, scene = setup
    out = tmp_path / "splat.ply"
    with pytest.raises(ReconError, match="auto, orbit, linear"):
        run_reconstruction(scene, out, ReconOptions(checkpoint=model_dir, path_mode="forward"))
    with pytest.raises(ReconError, match="generated_weight must be > 0"):
        run_reconstruction(scene, out, ReconOptions(checkpoint=model_dir, generated_weight=0.0))
    with pytest.raises(ReconError, match=r"stop must lie in \(0, 1\]"):
        run_reconstruction(scene, out, ReconOptions(checkpoint=model_dir, stop=0.0))
    with pytest.raises(ReconError, match="--checkpoint PATH.*cameo-train --config demo-cpu"):
        run_reconstruction(scene, out, ReconOptions(checkpoint=tmp_path / "no-model"))
    assert list(tmp_path.iterdir()) == []


def test_options_reach_the_sampler_and_the_fit(setup, tmp_path, monkeypatch):
    _, model_dir, scene = setup
    seen = {}

    def recording_fit(images, K, c2w, config, **kwargs):
        seen["weights"], seen["cloud"], seen["observed"] = kwargs["view_weights"], kwargs["cloud"], kwargs["observed"]
        return real_fit(images, K, c2w, config, **kwargs)

    def recording_generation(*args, **kwargs):
        seen["stop"] = kwargs["stop"]
        return real_generation(*args, **kwargs)

    real_fit, real_generation = pipeline.fit_gaussians, pipeline.generate_trajectory
    monkeypatch.setattr(pipeline, "fit_gaussians", recording_fit)
    monkeypatch.setattr(pipeline, "generate_trajectory", recording_generation)
    cloud = PointCloud(torch.randn(50, 3) * 0.2, torch.rand(50, 3), torch.full((50,), 0.01))
    monkeypatch.setattr(pipeline, "input_point_cloud", lambda images, K, c2w, depths: cloud)
    options = ReconOptions(checkpoint=model_dir, show_progress=False, write_video=False, generated_weight=0.25,
                           stop=0.5, **OPTIONS)
    res = run_reconstruction(scene, tmp_path / "w.ply", options, pretrained=CameoModel.from_pretrained(model_dir, "cpu"))
    expected = torch.full((NUM_VIEWS + 2,), 0.25)
    expected[list(res.input_indices)] = 1.0
    torch.testing.assert_close(seen["weights"], expected, atol=0, rtol=0)
    assert seen["cloud"] is cloud and seen["observed"].tolist() == [True] + [False] * NUM_VIEWS + [True]
    assert seen["stop"] == 0.5


def test_same_seed_same_result(result, setup, tmp_path):
    res, _ = result
    _, model_dir, scene = setup
    options = ReconOptions(checkpoint=model_dir, show_progress=False, write_video=False, **OPTIONS)
    again = run_reconstruction(scene, tmp_path / "again.ply", options)
    assert all(torch.equal(a, b) for a, b in zip(again.images, res.images, strict=True))
    assert torch.equal(again.splats.means, res.splats.means)
    assert again.ply.read_bytes() == res.ply.read_bytes()


def test_single_view_circle_path(setup, tmp_path):
    _, model_dir, scene = setup
    one = load_scene(scene.source)
    one.frames = one.frames[:1]
    options = ReconOptions(checkpoint=model_dir, show_progress=False, write_video=False,
                           **(OPTIONS | dict(num_views=2, steps=1, fit_iterations=1)))
    res = run_reconstruction(one, tmp_path / "one.ply", options)
    assert res.ply.is_file() and res.input_indices == (0,)
    np.testing.assert_allclose(res.c2w, scene_path(one, 2, "circle", 0.15).c2w, atol=1e-6)
    assert torch.equal(res.images[0], one.load_images()[0])
