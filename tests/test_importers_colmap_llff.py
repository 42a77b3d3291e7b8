"""COLMAP (text + binary) and LLFF importers: a known OpenCV rig written in each format comes back exactly, bad files
raise SceneError naming file and field, and ``cameo-recon`` accepts both as input."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cameo.cameras import look_at, project_points
from cameo.importers import import_colmap, import_llff, read_colmap, read_llff
from cameo.scene import Frame, SceneError
from recon import cli

W, H = 40, 30
# (camera_id, model name, model id, params, expected (fx, fy, cx, cy)); distortion terms 0 (undistortion: below).
CAMERAS = [
    (3, "PINHOLE", 1, [50.0, 55.0, 20.5, 14.25], (50.0, 55.0, 20.5, 14.25)),
    (7, "SIMPLE_PINHOLE", 0, [48.0, 19.0, 16.0], (48.0, 48.0, 19.0, 16.0)),
    (1, "OPENCV", 4, [52.0, 51.0, 20.0, 15.0, 0.0, 0.0, 0.0, 0.0], (52.0, 51.0, 20.0, 15.0)),
    (9, "SIMPLE_RADIAL", 2, [45.0, 21.0, 14.0, 0.0], (45.0, 45.0, 21.0, 14.0)),
    (2, "RADIAL", 3, [47.0, 20.0, 15.0, 0.0, 0.0], (47.0, 47.0, 20.0, 15.0)),
]
WRITE_ORDER = [3, 0, 4, 1, 2]  # images are written out of name order (and with sparse ids) to test the sorting
ROW0_TIMES_2 = np.array([2.0] * 3 + [1.0] * 14)  # scales row 0 of R: not a rotation
POINTS = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.25], [-0.4, 0.1, -0.3]], dtype=torch.float64)


def _rig() -> tuple[np.ndarray, np.ndarray]:
    """Five OpenCV cameras around the origin: c2w [5, 4, 4] and K [5, 3, 3] (float64)."""
    g = torch.Generator().manual_seed(0)
    eye = torch.nn.functional.normalize(torch.randn(5, 3, generator=g, dtype=torch.float64), dim=-1) * 3.0
    c2w = look_at(eye, torch.zeros(5, 3, dtype=torch.float64), torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64))
    K = np.array([[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] for *_, (fx, fy, cx, cy) in CAMERAS])
    return c2w.numpy(), K


def _rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix (Shepperd's method: divide by the largest of the four candidates)."""
    tr = np.trace(R)
    i = int(np.argmax([tr, R[0, 0], R[1, 1], R[2, 2]]))
    if i == 0:
        s = 2 * math.sqrt(1 + tr)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif i == 1:
        s = 2 * math.sqrt(1 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif i == 2:
        s = 2 * math.sqrt(1 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2 * math.sqrt(1 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4]
    return np.array(q)


def _colmap_images(c2w: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray, int, str]]:
    """(image_id, qvec, tvec, camera_id, name) in write order: COLMAP's world-to-camera pose of each c2w."""
    rows = []
    for i in WRITE_ORDER:
        R = c2w[i, :3, :3].T  # world-to-camera rotation
        rows.append((100 + 7 * i, _rotation_to_quaternion(R), -R @ c2w[i, :3, 3], CAMERAS[i][0], f"view_{i}.png"))
    return rows


def _pngs(folder: Path, n: int = 5, size: tuple[int, int] = (W, H)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"view_{i}.png")
    return folder


def _write_colmap_text(sparse: Path, c2w: np.ndarray) -> Path:
    sparse.mkdir(parents=True, exist_ok=True)
    cams = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    cams += [f"{cid} {name} {W} {H} " + " ".join(repr(p) for p in params) for cid, name, _, params, _ in CAMERAS]
    (sparse / "cameras.txt").write_text("\n".join(cams) + "\n")
    lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    for k, (image_id, q, t, cid, name) in enumerate(_colmap_images(c2w)):
        lines.append(" ".join(map(repr, [image_id, *q.tolist(), *t.tolist(), cid])) + f" {name}")
        lines.append("" if k % 2 else "12.5 3.25 -1 7.0 8.0 42")  # POINTS2D: empty for some images
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    return sparse


def _write_colmap_binary(sparse: Path, c2w: np.ndarray) -> Path:
    """cameras.bin / images.bin written byte by byte as COLMAP's documented little-endian layout."""
    sparse.mkdir(parents=True, exist_ok=True)
    cams = struct.pack("<Q", len(CAMERAS)) + b"".join(
        struct.pack("<iiQQ", cid, model_id, W, H) + struct.pack(f"<{len(params)}d", *params)
        for cid, _, model_id, params, _ in CAMERAS
    )
    (sparse / "cameras.bin").write_bytes(cams)
    images = [struct.pack("<Q", len(CAMERAS))]
    for k, (image_id, q, t, cid, name) in enumerate(_colmap_images(c2w)):
        points = [(12.5, 3.25, -1), (7.0, 8.0, 42)][: k % 3]
        images.append(struct.pack("<i7di", image_id, *q, *t, cid) + name.encode() + b"\0"
                      + struct.pack("<Q", len(points)) + b"".join(struct.pack("<ddq", *p) for p in points))
    (sparse / "images.bin").write_bytes(b"".join(images))
    return sparse


def _write_llff(folder: Path, c2w: np.ndarray, f: float = 50.0) -> Path:
    """poses_bounds.npy: per camera the 3x5 [down, right, back, t, hwf] camera-to-world (row-major), near, far."""
    down, right, back = c2w[:, :3, 1], c2w[:, :3, 0], -c2w[:, :3, 2]
    hwf = np.tile([H, W, f], (len(c2w), 1))
    pose = np.stack([down, right, back, c2w[:, :3, 3], hwf], axis=-1)  # [N, 3, 5]
    bounds = np.tile([0.5, 6.0], (len(c2w), 1))
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "poses_bounds.npy", np.concatenate([pose.reshape(len(c2w), 15), bounds], axis=1))
    return folder / "poses_bounds.npy"


def _assert_same_cameras(frames: list[Frame], c2w: np.ndarray, K: np.ndarray, scale: float = 1.0) -> None:
    """Poses and intrinsics to 1e-6, and world points land on the same pixels (times ``scale``)."""
    got_c2w, got_K = np.stack([f.c2w for f in frames]), np.stack([f.K for f in frames])
    np.testing.assert_allclose(got_c2w, c2w, atol=1e-6)
    np.testing.assert_allclose(got_K, K * np.array([scale, scale, 1.0])[:, None], atol=1e-6)
    uv_want, z_want = project_points(POINTS, torch.from_numpy(K), torch.from_numpy(c2w))
    uv_got, z_got = project_points(POINTS, torch.from_numpy(got_K), torch.from_numpy(got_c2w))
    assert (z_want > 0).all()
    torch.testing.assert_close(uv_got, uv_want * scale, atol=1e-6, rtol=0)
    torch.testing.assert_close(z_got, z_want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("writer", [_write_colmap_text, _write_colmap_binary])
@pytest.mark.parametrize("layout", ["sparse/0", "sparse"])
def test_colmap_recovers_the_rig(tmp_path: Path, writer, layout: str) -> None:
    c2w, K = _rig()
    images = _pngs(tmp_path / "project" / "images")
    sparse = writer(tmp_path / "project" / layout, c2w)
    frames = read_colmap(sparse)  # images found at <sparse>/../../images (mapper) or <sparse>/../images (undistorted)
    assert [f.image for f in frames] == [(images / f"view_{i}.png").resolve() for i in range(5)]
    assert all((f.width, f.height) == (W, H) for f in frames)
    _assert_same_cameras(frames, c2w, K)
    scene = import_colmap(sparse, [4, 1])
    _assert_same_cameras(scene.frames, c2w[[4, 1]], K[[4, 1]])
    assert scene.load_images().shape == (2, 3, H, W)


def test_colmap_hand_checked_pose(tmp_path: Path) -> None:
    """A 90 degree turn about the optical axis: world +x appears downward in the image (COLMAP x_cam = R x + t)."""
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    (sparse / "cameras.txt").write_text(f"1 SIMPLE_PINHOLE {W} {H} 50 20 15\n")
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    (sparse / "images.txt").write_text(f"1 {c} 0 0 {s} 0 0 5 1 a.png\n\n")
    (frame,) = read_colmap(sparse, images_dir=tmp_path)
    np.testing.assert_allclose(frame.c2w[:3, 3], [0, 0, -5], atol=1e-12)  # centre = -R^T t
    uv, z = project_points(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), torch.from_numpy(frame.K),
                           torch.from_numpy(frame.c2w))
    torch.testing.assert_close(uv[0], torch.tensor([20.0, 15.0 + 50.0 / 5], dtype=torch.float64))
    assert float(z[0]) == pytest.approx(5.0)


@pytest.mark.parametrize("scale", [1.0, 0.5, 2.0])
def test_llff_recovers_the_rig_and_rescales_to_the_image_files(tmp_path: Path, scale: float) -> None:
    c2w, _ = _rig()
    K = np.tile(np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]]), (5, 1, 1))
    path = _write_llff(tmp_path, c2w)
    folder = _pngs(tmp_path / "images" if scale == 1 else tmp_path / f"images_{scale:g}",
                   size=(round(W * scale), round(H * scale)))
    frames = read_llff(path, None if scale == 1 else folder)
    assert [f.image.name for f in frames] == [f"view_{i}.png" for i in range(5)]
    _assert_same_cameras(frames, c2w, K, scale)
    scene = import_llff(path, [0, 3], None if scale == 1 else folder)
    _assert_same_cameras(scene.frames, c2w[[0, 3]], K[[0, 3]], scale)


def test_llff_hand_checked_axes(tmp_path: Path) -> None:
    """R = I in LLFF means camera down = world x, right = world y, back = world z (it looks along -z)."""
    pose = np.concatenate([np.eye(3), [[0.0], [0.0], [5.0]], [[H], [W], [50.0]]], axis=1)
    np.save(tmp_path / "poses_bounds.npy", np.concatenate([pose.reshape(15), [1.0, 9.0]])[None])
    _pngs(tmp_path / "images", n=1)
    (frame,) = read_llff(tmp_path / "poses_bounds.npy")
    pts = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    uv, z = project_points(pts, torch.from_numpy(frame.K), torch.from_numpy(frame.c2w))
    torch.testing.assert_close(uv, torch.tensor([[20.0 + 10.0, 15.0], [20.0, 15.0 + 10.0]], dtype=torch.float64))
    torch.testing.assert_close(z, torch.tensor([5.0, 5.0], dtype=torch.float64))


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("file", "edit", "field", "words"),
    [
        ("images.txt", lambda p: _replace_line(p, 3, "100 abc 0 0 0 0 0 0 3 view_3.png"), "line 3 QW", "number"),
        ("images.txt", lambda p: _replace_line(p, 3, "100 1 0 0 0 0 0 0"), "line 3", "IMAGE_ID QW"),
        ("images.txt", lambda p: _replace_line(p, 3, "100 0 0 0 0 0 0 0 3 view_3.png"), "line 3 QW..QZ", "zero"),
        ("images.txt", lambda p: _replace_line(p, 3, "100 1 0 0 0 0 0 0 5 view_3.png"), "line 3 CAMERA_ID",
         "not in cameras.txt"),
        ("cameras.txt", lambda p: _replace_line(p, 3, f"3 PANORAMA {W} {H} 1 2 3"), "line 3 MODEL", "unknown camera model"),
        ("cameras.txt", lambda p: _replace_line(p, 3, f"3 PINHOLE {W} {H} 50 55 20"), "line 3 PARAMS", "4 parameters"),
        ("cameras.txt", lambda p: _replace_line(p, 3, f"3 PINHOLE {W} x 50 55 20 15"), "line 3 HEIGHT", "integer"),
        ("cameras.txt", lambda p: _replace_line(p, 3, f"3 FOV {W} {H} 50 55 20 15 0.9"), "camera 3",
         "FOV cannot be undistorted"),
        ("cameras.txt", lambda p: _replace_line(p, 4, f"7 SIMPLE_PINHOLE {W} {H} -48 19 16"), "camera 7 PARAMS", "> 0"),
    ],
)
def test_colmap_text_errors_name_file_and_field(tmp_path: Path, file: str, edit, field: str, words: str) -> None:
    sparse = _write_colmap_text(tmp_path / "sparse", _rig()[0])
    edit(sparse / file)
    with pytest.raises(SceneError) as info:
        read_colmap(sparse, images_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(f"{sparse / file}: {field}: ") and words in message, message


def test_colmap_binary_errors_name_file_and_field(tmp_path: Path) -> None:
    sparse = _write_colmap_binary(tmp_path / "sparse", _rig()[0])
    images = (sparse / "images.bin").read_bytes()
    (sparse / "images.bin").write_bytes(images[:-10])
    with pytest.raises(SceneError, match=r"images\.bin: images\[4\] POINTS2D: file ends early"):
        read_colmap(sparse)
    (sparse / "images.bin").write_bytes(images + b"\0")
    with pytest.raises(SceneError, match=r"images\.bin: 1 unexpected bytes"):
        read_colmap(sparse)
    (sparse / "images.bin").write_bytes(images)
    cameras = bytearray((sparse / "cameras.bin").read_bytes())
    cameras[12:16] = struct.pack("<i", 42)  # model id of the first camera
    (sparse / "cameras.bin").write_bytes(bytes(cameras))
    with pytest.raises(SceneError, match=r"cameras\.bin: cameras\[0\] MODEL_ID: unknown camera model id 42"):
        read_colmap(sparse)
    (sparse / "cameras.bin").unlink()
    with pytest.raises(SceneError, match="not a COLMAP sparse model folder"):
        read_colmap(sparse)


def test_colmap_missing_images_suggests_the_images_option(tmp_path: Path) -> None:
    sparse = _write_colmap_text(tmp_path / "sparse" / "0", _rig()[0])
    with pytest.raises(SceneError, match=r"images: .*view_0\.png not found; .*--images DIR"):
        import_colmap(sparse, [0])
    assert len(import_colmap(sparse, [0], images_dir=_pngs(tmp_path / "elsewhere")).frames) == 1


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda a: a[:, :15], "shape", "[N, 17]"),
        (lambda a: a.reshape(5, 17, 1), "shape", "[N, 17]"),
        (lambda a: a[:4], "images", "holds 5 images but the file has 4 poses"),
        (lambda a: a * np.where(np.arange(5)[:, None] == 1, ROW0_TIMES_2, 1.0), "poses[1]", "orthonormal"),
        (lambda a: np.where(np.arange(17) == 14, 0.0, a), "poses[0].hwf", "> 0"),
        (lambda a: np.where(np.arange(17) == 4, 20.0, a), "poses[0].hwf", "not a resized copy"),
        (lambda a: np.where(np.arange(17) == 16, np.nan, a), "poses[0]", "non-finite"),
    ],
)
def test_llff_errors_name_file_and_field(tmp_path: Path, edit, field: str, words: str) -> None:
    path = _write_llff(tmp_path, _rig()[0])
    _pngs(tmp_path / "images")
    np.save(path, edit(np.load(path)))
    with pytest.raises(SceneError) as info:
        read_llff(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: ") and words in message, message


def test_cli_load_input_reads_colmap_and_llff(tmp_path: Path) -> None:
    c2w, K = _rig()
    _pngs(tmp_path / "colmap" / "images")
    sparse = _write_colmap_binary(tmp_path / "colmap" / "sparse" / "0", c2w)
    _assert_same_cameras(cli.load_input(sparse, [2, 0]).frames, c2w[[2, 0]], K[[2, 0]])
    npy = _write_llff(tmp_path / "llff", c2w)
    small = _pngs(tmp_path / "llff" / "images_2", size=(W // 2, H // 2))
    scene = cli.load_input(npy, [1], images=small)
    assert (scene.frames[0].width, scene.frames[0].fx) == (W // 2, 25.0)
    with pytest.raises(SceneError, match=r"--images: only for a COLMAP"):
        cli.load_input(tmp_path / "scene.json", None, images=small)


def test_cameo_recon_runs_on_a_colmap_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _pngs(tmp_path / "project" / "images")
    sparse = _write_colmap_text(tmp_path / "project" / "sparse" / "0", _rig()[0])
    out = tmp_path / "res" / "splat.ply"
    args = [sparse, "--frames", "0", "3", "--inputs-only", "--out", out, "--fit-iterations", "1", "--fit-points",
            "50", "--device", "cpu", "--no-video", "--quiet"]
    code = cli.main([str(a) for a in args])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert out.is_file()
    code = cli.main([str(a) for a in args[:1] + ["--out", out]])
    assert code == 2 and "choose 1 or 2" in capsys.readouterr().err
