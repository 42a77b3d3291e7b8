"""scene.json: round trip, tensors, images, and one test per validation error (message names file + field)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cameo.scene import (
    SCENE_FORMAT_HELP,
    Frame,
    Scene,
    SceneError,
    check_distinct_cameras,
    load_scene,
    save_scene,
)


def _rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _pose(deg: float, t: tuple[float, float, float]) -> list[list[float]]:
    m = np.eye(4)
    m[:3, :3] = _rot_y(deg)
    m[:3, 3] = t
    return m.tolist()


def _write_scene(tmp_path: Path, n: int = 2, size: tuple[int, int] = (8, 6)) -> Path:
    """A valid 2-frame scene with small images in a subfolder."""
    (tmp_path / "imgs").mkdir(exist_ok=True)
    frames = []
    for i in range(n):
        rgb = np.full((size[1], size[0], 3), 40 * (i + 1), dtype=np.uint8)
        rgb[0, 0] = [255, 0, 0]
        Image.fromarray(rgb).save(tmp_path / "imgs" / f"v{i}.png")
        frames.append(
            {"image": f"imgs/v{i}.png", "width": size[0], "height": size[1], "fx": 10.0, "fy": 11.0,
             "cx": 4.0, "cy": 3.0, "c2w": _pose(20.0 * i, (0.5 * i, 0.0, 0.0))}
        )
    path = tmp_path / "scene.json"
    path.write_text(json.dumps({"version": 1, "convention": "opencv", "frames": frames}))
    return path


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_load_tensors_and_images(tmp_path: Path) -> None:
    scene = load_scene(_write_scene(tmp_path))
    assert scene.c2w.shape == (2, 4, 4) and scene.c2w.dtype == torch.float32
    assert torch.allclose(scene.c2w[1, :3, 3], torch.tensor([0.5, 0.0, 0.0]))
    assert torch.equal(scene.K[0], torch.tensor([[10.0, 0, 4], [0, 11, 3], [0, 0, 1]]))
    images = scene.load_images()
    assert images.shape == (2, 3, 6, 8) and images.dtype == torch.float32
    assert torch.allclose(images[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert abs(float(images[1, 1, 2, 2]) - 80 / 255) < 1e-6


def test_save_round_trip_relative_paths(tmp_path: Path) -> None:
    scene = load_scene(_write_scene(tmp_path))
    out_dir = tmp_path / "elsewhere" / "deeper"
    out_dir.mkdir(parents=True)
    out = save_scene(scene, out_dir / "copy.json")
    data = json.loads(out.read_text())
    assert data["frames"][0]["image"] == "../../imgs/v0.png"
    assert data["version"] == 1 and data["convention"] == "opencv"
    again = load_scene(out)
    assert torch.equal(again.c2w, scene.c2w) and torch.equal(again.K, scene.K)
    assert not list(out_dir.glob("*.tmp"))


def test_save_invalid_scene_writes_nothing(tmp_path: Path) -> None:
    scene = load_scene(_write_scene(tmp_path))
    scene.frames[0].fx = -1.0
    with pytest.raises(SceneError):
        save_scene(scene, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def test_help_text_documents_convention() -> None:
    assert "opencv" in SCENE_FORMAT_HELP and "c2w" in SCENE_FORMAT_HELP


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda d: d["frames"][1]["c2w"][0].__setitem__(0, 1.31), "frames[1].c2w", "not orthonormal"),
        (lambda d: d["frames"][0].__setitem__("c2w", np.diag([1.0, 1, -1, 1]).tolist()), "frames[0].c2w", "det -1"),
        (lambda d: d["frames"][0]["c2w"][2].__setitem__(3, float("nan")), "frames[0].c2w", "non-finite"),
        (lambda d: d["frames"][0]["c2w"].pop(), "frames[0].c2w", "4x4"),
        (lambda d: d["frames"][1].__setitem__("fy", 0.0), "frames[1].fy", "> 0"),
        (lambda d: d["frames"][1].__setitem__("cx", float("inf")), "frames[1].cx", "finite"),
        (lambda d: d["frames"][0].pop("fx"), "frames[0].fx", "missing"),
        (lambda d: d["frames"][0].__setitem__("width", "8"), "frames[0].width", "must be int"),
        (lambda d: d["frames"][0].__setitem__("width", 9), "frames[0].width/height", "9x6"),
        (lambda d: d["frames"][1].__setitem__("image", "imgs/nope.png"), "frames[1].image", "cannot read"),
        (lambda d: d.__setitem__("frames", []), "frames", "got 0"),
        (lambda d: d.__setitem__("frames", d["frames"] * 2), "frames", "got 4"),
        (lambda d: d["frames"][1].__setitem__("c2w", d["frames"][0]["c2w"]), "frames", "identical"),
        (lambda d: d.__setitem__("convention", "opengl"), "convention", "opencv"),
        (lambda d: d.pop("version"), "version", "missing"),
    ],
)
def test_validation_errors_name_file_and_field(tmp_path: Path, edit, field: str, words: str) -> None:
    path = _write_scene(tmp_path)
    _edit(path, edit)
    with pytest.raises(SceneError) as info:
        load_scene(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {field}: "), msg
    assert words in msg, msg
    assert info.value.field == field and info.value.file == str(path)


def test_orthonormal_message_reports_error_value(tmp_path: Path) -> None:
    path = _write_scene(tmp_path)
    _edit(path, lambda d: d["frames"][1]["c2w"][0].__setitem__(0, 1.31))
    with pytest.raises(SceneError, match=r"\|R\^T R - I\| = 0\.\d+ > 0\.001"):
        load_scene(path)


def test_unreadable_image_and_bad_json(tmp_path: Path) -> None:
    path = _write_scene(tmp_path)
    (tmp_path / "imgs" / "v0.png").write_bytes(b"not a png")
    with pytest.raises(SceneError, match=r"frames\[0\]\.image: cannot read image"):
        load_scene(path)
    path.write_text("{ nope")
    with pytest.raises(SceneError, match="not valid JSON"):
        load_scene(path)
    with pytest.raises(SceneError, match="cannot read file"):
        load_scene(tmp_path / "missing.json")


def test_load_images_checks_size_changed_on_disk(tmp_path: Path) -> None:
    scene = load_scene(_write_scene(tmp_path))
    Image.fromarray(np.zeros((5, 8, 3), dtype=np.uint8)).save(scene.frames[1].image)
    with pytest.raises(SceneError, match=r"frames\[1\]\.width/height"):
        scene.load_images()


def test_check_distinct_cameras() -> None:
    a = torch.eye(4)
    b = torch.eye(4)
    with pytest.raises(SceneError, match="identical"):
        check_distinct_cameras(torch.stack([a, b]), "x.json")
    b[0, 3] = 1e-3
    check_distinct_cameras(torch.stack([a, b]))  # translation only: distinct
    rotated = torch.eye(4, dtype=torch.float64)
    rotated[:3, :3] = torch.from_numpy(_rot_y(1.0))
    check_distinct_cameras(torch.stack([a.double(), rotated]))  # rotation only: distinct


def test_scene_from_frames_validates_in_memory(tmp_path: Path) -> None:
    path = _write_scene(tmp_path, n=1)
    scene = load_scene(path)
    frame = scene.frames[0]
    assert isinstance(frame, Frame)
    clone = Scene([Frame(frame.image, 8, 6, 10.0, 10.0, 4.0, 3.0, np.eye(4))])
    assert save_scene(clone, tmp_path / "one.json").exists()


def test_numbers_given_as_strings_are_refused(tmp_path: Path) -> None:
    path = _write_scene(tmp_path)
    _edit(path, lambda d: d["frames"][1]["c2w"][0].__setitem__(0, "1"))
    with pytest.raises(SceneError, match=r"frames\[1\]\.c2w.*not strings"):
        load_scene(path)


def _with_depth(tmp_path: Path, depth: np.ndarray, name: str = "d0.npy", scale: float | None = None) -> Path:
    """The valid scene with frame 0 naming ``depth`` (saved as .npy, or as a 16-bit PNG for a .png name)."""
    path = _write_scene(tmp_path)
    if name.endswith(".npy"):
        np.save(tmp_path / name, depth)
    else:
        Image.fromarray(depth.astype(np.uint16)).save(tmp_path / name)

    def add(d: dict) -> None:
        d["frames"][0]["depth"] = name
        if scale is not None:
            d["frames"][0]["depth_scale"] = scale

    _edit(path, add)
    return path


def test_depth_npy_loads_with_unknown_pixels_as_nan(tmp_path: Path) -> None:
    depth = np.full((6, 8), 2.5, dtype=np.float32)
    depth[0, 0], depth[1, 1] = 0.0, np.nan
    scene = load_scene(_with_depth(tmp_path, depth))
    maps = scene.load_depths()
    assert maps[1] is None and maps[0].shape == (6, 8)
    assert torch.isnan(maps[0][0, 0]) and torch.isnan(maps[0][1, 1]) and float(maps[0][2, 2]) == 2.5
    again = tmp_path / "copy" / "scene.json"
    again.parent.mkdir()
    save_scene(scene, again)
    assert load_scene(again).frames[0].depth == scene.frames[0].depth


def test_depth_png_uses_its_scale(tmp_path: Path) -> None:
    scene = load_scene(_with_depth(tmp_path, np.full((6, 8), 1500), "d0.png", scale=0.001))
    assert torch.allclose(scene.load_depths()[0], torch.full((6, 8), 1.5))


@pytest.mark.parametrize(
    ("depth", "name", "scale", "message"),
    [
        (np.ones((5, 8), np.float32), "d0.npy", None, r"frames\[0\]\.depth: .*d0\.npy has shape \[5, 8\]"),
        (np.full((6, 8), np.inf, np.float32), "d0.npy", None, r"frames\[0\]\.depth: .*infinite"),
        (np.full((6, 8), -1.0, np.float32), "d0.npy", None, r"frames\[0\]\.depth: .*negative"),
        (np.ones((6, 8)), "d0.png", None, r"frames\[0\]\.depth_scale: .*needs depth_scale"),
        (np.ones((6, 8)), "d0.png", -2.0, r"frames\[0\]\.depth_scale: .*> 0"),
    ],
)
def test_bad_depth_maps_are_refused(tmp_path: Path, depth: np.ndarray, name: str, scale: float | None,
                                    message: str) -> None:
    path = _with_depth(tmp_path, depth, name, scale)
    with pytest.raises(SceneError, match=message) as err:
        load_scene(path)
    assert str(path) in str(err.value)


def test_help_documents_depth() -> None:
    assert "depth_scale" in SCENE_FORMAT_HELP and "16-bit PNG" in SCENE_FORMAT_HELP
