"""cameo-app input handling without a server: cameras from fields / files, readable errors, sessions, progress."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.camera_fields import CameraFields, cameras_from_fields
from app.inputs import InputError, build_scene
from app.workspace import Workspaces
from cameo.cameras import project_points
from cameo.importers import save_nerfstudio
from cameo.scene import Scene, SceneError, make_frames, save_scene


def _png(path: Path, width: int = 32, height: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def two_images(tmp_path: Path) -> list[Path]:
    return [_png(tmp_path / "left.png", seed=0), _png(tmp_path / "right.png", seed=1)]


def test_orbit_camera_looks_at_the_target_from_the_right():
    fields = CameraFields(fov_deg=60, mode="orbit", orbit_deg=30, distance=2.0)
    K, c2w = cameras_from_fields(2, 40, 30, fields)
    assert torch.allclose(c2w[0], torch.eye(4))
    target = torch.tensor([[0.0, 0.0, 2.0]])
    uv, z = project_points(target.expand(2, 1, 3), K, c2w)
    assert torch.allclose(uv, torch.tensor([20.0, 15.0]).expand(2, 1, 2), atol=1e-4)  # image centre in both
    assert torch.allclose(z, torch.full((2, 1), 2.0), atol=1e-5)  # same distance to the look-at point
    assert c2w[1, 0, 3] > 0  # positive angle: second camera to the right (+x)
    assert float(K[0, 0, 0]) == pytest.approx(20 / np.tan(np.radians(30)))


def test_translation_keeps_orientation():
    _, c2w = cameras_from_fields(2, 40, 30, CameraFields(mode="translation", translation=(0.5, 0.0, 0.1)))
    assert torch.allclose(c2w[1, :3, :3], torch.eye(3))
    assert torch.allclose(c2w[1, :3, 3], torch.tensor([0.5, 0.0, 0.1]))


def test_scene_from_fields(two_images):
    scene = build_scene(two_images, "fields", fields=CameraFields(fov_deg=90))
    assert [f.image for f in scene.frames] == two_images
    assert (scene.frames[0].width, scene.frames[0].height) == (32, 24)
    assert scene.frames[0].fx == pytest.approx(16.0)
    one = build_scene([two_images[0], None], "fields")
    assert len(one.frames) == 1


def _camera_scene(tmp_path: Path, names: list[str], size=(32, 24)) -> tuple[torch.Tensor, list[Path]]:
    """Images with the given names in another folder (as the user has them) and distinct cameras (x offsets)."""
    folder = tmp_path / "original"
    folder.mkdir(exist_ok=True)
    paths = [_png(folder / n, *size, seed=i) for i, n in enumerate(names)]
    c2w = torch.eye(4).repeat(len(names), 1, 1)
    c2w[:, 0, 3] = 0.5 * torch.arange(len(names))
    return c2w, paths


def test_scene_json_cameras_follow_uploaded_names(tmp_path, two_images):
    c2w, originals = _camera_scene(tmp_path, ["right.png", "left.png"])  # file lists them in the other order
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]).expand(2, 3, 3)
    frames = make_frames(originals, K, c2w, [(32, 24)] * 2)
    camera_file = save_scene(Scene(frames), tmp_path / "original" / "scene.json")
    scene = build_scene(two_images, "file", camera_file)
    assert [f.image for f in scene.frames] == two_images  # the uploaded files, not the file's own paths
    np.testing.assert_allclose(scene.frames[0].c2w, c2w[1].double().numpy(), atol=1e-6)  # left.png's camera
    np.testing.assert_allclose(scene.frames[1].c2w, c2w[0].double().numpy(), atol=1e-6)


def test_transforms_json_picks_frames_by_name(tmp_path, two_images):
    c2w, originals = _camera_scene(tmp_path, ["left.png", "other.png", "right.png"])
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]).expand(3, 3, 3)
    frames = make_frames(originals, K, c2w, [(32, 24)] * 3)
    camera_file = save_nerfstudio(frames, tmp_path / "original" / "transforms.json")
    scene = build_scene(two_images, "file", camera_file)
    np.testing.assert_allclose(scene.frames[1].c2w, c2w[2].double().numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no image", "No image"),
        ("not an image", "Image 1 (notes.png) is not an image"),
        ("huge", "Image 1 (left.png) is 32x24"),
        ("sizes differ", "Image 1 is 32x24 but image 2 is 20x20"),
        ("no camera file", "no"),
        ("bad json", "is not readable JSON"),
        ("too many frames", "has 3 frames and none is named like"),
        ("zero orbit", "Camera fields: orbit angle must be non-zero"),
    ],
)
def test_bad_inputs_give_readable_messages(tmp_path, two_images, case, expected):
    images, source, camera_file, fields, max_pixels = two_images, "fields", None, CameraFields(), 10_000
    if case == "no image":
        images = [None, None]
    elif case == "not an image":
        (tmp_path / "notes.png").write_text("not pixels")
        images = [tmp_path / "notes.png"]
    elif case == "huge":
        max_pixels = 500
    elif case == "sizes differ":
        images = [two_images[0], _png(tmp_path / "small.png", 20, 20)]
    elif case == "no camera file":
        source = "file"
    elif case == "bad json":
        source, camera_file = "file", tmp_path / "scene.json"
        camera_file.write_text("{not json")
    elif case == "too many frames":
        c2w, originals = _camera_scene(tmp_path, ["a.png", "b.png", "c.png"])
        K = torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]).expand(3, 3, 3)
        source = "file"
        camera_file = save_nerfstudio(make_frames(originals, K, c2w, [(32, 24)] * 3), tmp_path / "transforms.json")
    elif case == "zero orbit":
        fields = CameraFields(orbit_deg=0.0)
    with pytest.raises(InputError, match=re.escape(expected)):
        build_scene(images, source, camera_file, fields, max_pixels)


def test_camera_file_with_other_image_size_names_file_and_field(tmp_path, two_images):
    c2w, originals = _camera_scene(tmp_path, ["left.png", "right.png"], size=(64, 48))
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]]).expand(2, 3, 3)
    frames = make_frames(originals, K, c2w, [(64, 48)] * 2)
    camera_file = save_scene(Scene(frames), tmp_path / "original" / "scene.json")
    with pytest.raises(SceneError) as err:
        build_scene(two_images, "file", camera_file)
    assert err.value.field == "frames[0].width/height" and "32x24" in err.value.message


def test_workspaces_expire_close_and_spare_busy_sessions(tmp_path):
    spaces = Workspaces(ttl_seconds=0.05, root=tmp_path)
    idle, busy, closed = (spaces.get(name) for name in ("idle", "busy", "closed"))
    first = idle.new_run()
    (first / "splat.ply").write_bytes(b"x")
    second = idle.new_run()
    assert not first.exists() and second.is_dir()  # a new run drops the previous one
    spaces.close("closed")
    assert not closed.dir.exists()
    with busy.in_use():
        time.sleep(0.1)
        assert spaces.sweep() == ["idle"]
    assert not idle.dir.exists() and busy.dir.exists()
    spaces.shutdown()
    assert not spaces.root.exists()


def test_progress_bar_is_monotonic_over_the_pipeline_stages():
    from app.ui import overall_progress

    events = [(s, f) for s in ("path", "generate", "fit", "export") for f in (0.0, 0.5, 1.0)]
    values = [overall_progress(s, f)[0] for s, f in events]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 1.0
    assert overall_progress("generate", 0.5)[1] == "Generating views (50%)"


def test_telemetry_is_off_before_gradio_is_imported():
    code = ("import os, sys; os.environ['HF_HUB_OFFLINE'] = '0'; import app; assert 'gradio' not in sys.modules; "
            "import huggingface_hub.constants as c; import gradio.analytics as a; "
            "print(os.environ['GRADIO_ANALYTICS_ENABLED'], c.HF_HUB_OFFLINE, c.HF_HUB_DISABLE_TELEMETRY, "
            "a.analytics_enabled())")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_HUB"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.split() == ["False", "True", "True", "False"]


def test_scene_json_error_keeps_the_field(tmp_path, two_images):
    camera_file = tmp_path / "scene.json"
    camera_file.write_text(json.dumps({"version": 1, "convention": "opencv", "frames": [{"image": "left.png"}]}))
    with pytest.raises(SceneError, match="missing field"):
        build_scene(two_images[:1], "file", camera_file)


def test_camera_path_dropdown_offers_the_cli_path_modes():
    from app.ui import path_mode_choices
    from recon.cli import build_parser

    (action,) = [a for a in build_parser()._actions if a.dest == "path_mode"]
    labels = dict((value, label) for label, value in path_mode_choices())
    assert list(labels) == list(action.choices) and action.default == "auto"
    assert labels["circle"] == "circle (1 image)" and labels["linear"] == "linear (2 images)"
    assert labels["orbit"] == "orbit (1 or 2 images)"
