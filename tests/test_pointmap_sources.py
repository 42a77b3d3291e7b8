"""Pointmap sources of ``cameo-train`` on a tiny real-format capture (a procedural scene written as a nerfstudio
folder, so the exact depth is known): cached stereo, VGGT (a stub with its interface), the dataset's own depth, the
clear error when CAMEO has none, and no pointmaps at all when CAMEO is off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cameo.cameras import unproject_depth
from cameo.data import stereo_pointmaps
from cameo.data.frame_depth import VGGTDepth, best_neighbours
from cameo.data.loaders import nerfstudio
from cameo.data.loaders.common import Sequence, SequenceDataset
from cameo.data.pointmaps import VGGTPointmaps
from cameo.data.procedural import generate_scene
from cameo.data.stereo_pointmaps import StereoPointmaps
from cameo.importers.nerfstudio import opencv_to_opengl
from cameo.train.config import DataConfig
from cameo.train.data import open_parts

RES = 64


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 4-view object scene as ``transforms.json`` + PNGs; returns the folder and the exact depth ``[4, H, W]``."""
    folder = tmp_path_factory.mktemp("capture")
    scene = generate_scene("object", 0, 3, views=4, resolution=RES)
    frames = []
    for i in range(4):
        Image.fromarray(scene.rgb[i]).save(folder / f"{i}.png")
        K = scene.K[i]
        frames.append({"file_path": f"{i}.png", "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]),
                       "cy": float(K[1, 2]), "w": RES, "h": RES,
                       "transform_matrix": opencv_to_opengl(scene.c2w[i].astype(np.float64)).tolist()})
    (folder / "transforms.json").write_text(json.dumps({"camera_model": "OPENCV", "frames": frames}))
    return folder, scene.depth


def _config(folder: Path, **fields) -> DataConfig:
    return DataConfig(source="nerfstudio", path=str(folder), num_views=3, resolution=32, val_scenes=0, **fields)


def test_stereo_depth_is_cached_and_close_to_the_exact_depth(capture, tmp_path: Path, monkeypatch) -> None:
    folder, exact = capture
    (seq,) = nerfstudio.read_sequences(folder)
    source = StereoPointmaps(tmp_path / "cache", max_side=RES)
    done = source.prepare([seq], progress=False)
    depth = np.stack([source.frame_depth(seq, i) for i in range(4)])
    valid = np.isfinite(depth)
    rel = np.abs(depth[valid] - exact[valid]) / exact[valid]
    assert valid.mean() > 0.2 and np.median(rel) < 0.03, (valid.mean(), np.median(rel))
    assert done[seq.name]["frames"] == 4 and (source.folder(seq) / "summary.json").is_file()
    monkeypatch.setattr(stereo_pointmaps, "two_view_depth", None)  # a second source reads the cache, computes nothing
    again = StereoPointmaps(tmp_path / "cache", max_side=RES)
    assert again.prepare([seq], progress=False) == {}
    np.testing.assert_array_equal(again.frame_depth(seq, 2), depth[2])


def test_best_neighbours_prefer_the_typical_spacing_and_the_same_direction() -> None:
    c2w = torch.eye(4).repeat(5, 1, 1)
    c2w[:, 0, 3] = torch.tensor([0.0, 1.0, 2.0, 2.05, 6.0])  # frame 3 nearly duplicates frame 2
    c2w[4, :3, :3] = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])  # frame 4 looks the other way
    assert best_neighbours(c2w, 0, 3) == [1, 2, 3]
    assert best_neighbours(c2w, 2, 1) == [1] and 4 not in best_neighbours(c2w, 3, 4)


def test_training_data_takes_stereo_pointmaps_by_default(capture, tmp_path: Path) -> None:
    folder, _ = capture
    (part,) = open_parts(_config(folder, pointmap_max_side=RES), seed=0, cameo=True, run_dir=tmp_path)
    assert isinstance(part.pointmaps, StereoPointmaps) and (tmp_path / "pointmaps").is_dir()
    sample = part[0]
    pts = sample["pointmaps"]
    assert pts.shape == (3, 3, 32, 32) and torch.isnan(pts).any() and torch.isfinite(pts).any()
    assert "depth" not in sample  # stereo depth is a pointmap source, not the dataset's depth


def test_vggt_source_through_the_config(capture, tmp_path: Path, monkeypatch) -> None:
    folder, _ = capture

    def vggt_stub(x: torch.Tensor) -> dict:
        """VGGT's interface: images [F, 3, h, 518] -> world_points [1, F, h, 518, 3] in camera 0's frame, any scale."""
        f, _, h, w = x.shape
        return {"world_points": torch.full((1, f, h, w, 3), 0.5)}

    loaded = []
    monkeypatch.setattr(VGGTPointmaps, "from_checkpoint",
                        classmethod(lambda cls, path, device="cpu": loaded.append(path) or cls(vggt_stub)))
    cfg = _config(folder, pointmaps="vggt", vggt_checkpoint="vggt.pt", pointmap_max_side=RES)
    (part,) = open_parts(cfg, 0, cameo=True, run_dir=tmp_path)
    assert loaded == ["vggt.pt"] and isinstance(part.pointmaps, VGGTDepth)
    assert len(list(part.pointmaps.folder(part.sequences[0]).glob("frame_*.npy"))) == 4  # computed before training
    assert part[0]["pointmaps"].shape == (3, 3, 32, 32)


def test_vggt_depth_puts_vggt_points_into_the_frame_and_scale_of_the_cameras(capture, tmp_path: Path) -> None:
    folder, exact = capture
    (seq,) = nerfstudio.read_sequences(folder)

    def vggt_stub(x: torch.Tensor) -> dict:
        """The exact points of the views VGGT is given (found by their images), in camera 0's frame, at 1/3 scale."""
        f, _, h, w = x.shape
        frames = [int(np.argmin([float((x[v] - F.interpolate(seq.image(i)[None], size=(h, w), mode="bilinear",
                                                               align_corners=False, antialias=True)[0]).abs().mean())
                                 for i in range(4)])) for v in range(f)]
        depth = torch.from_numpy(exact[frames])
        K = seq.K[frames].float().clone()
        K[:, 0] *= w / RES
        K[:, 1] *= h / RES
        depth = F.interpolate(depth[:, None], size=(h, w), mode="nearest")[:, 0]
        world = unproject_depth(depth, K, seq.c2w[frames].float())  # [F, h, w, 3]
        w2c0 = torch.linalg.inv(seq.c2w[frames[0]].float())
        cam0 = world @ w2c0[:3, :3].T + w2c0[:3, 3]
        return {"world_points": cam0[None] / 3}

    source = VGGTDepth(VGGTPointmaps(vggt_stub), tmp_path / "cache", max_side=RES, neighbours=2)
    depth = source.frame_depth(seq, 1)
    valid = np.isfinite(depth) & np.isfinite(exact[1])
    assert valid.mean() > 0.5, valid.mean()
    assert np.median(np.abs(depth[valid] - exact[1][valid]) / exact[1][valid]) < 0.02


def test_dataset_depth_source(capture) -> None:
    folder, exact = capture
    (seq,) = nerfstudio.read_sequences(folder)
    seq = Sequence(seq.name, seq.images, seq.K, seq.c2w, seq.images, lambda path, i: exact[i])
    sample = SequenceDataset([seq], num_views=2, resolution=RES)[0]
    want = unproject_depth(sample["depth"], sample["K"], sample["c2w"]).permute(0, 3, 1, 2)
    torch.testing.assert_close(sample["pointmaps"], want)


@pytest.mark.parametrize(("fields", "words"), [
    ({"pointmaps": "dataset"}, "has no depth maps"),
    ({"pointmaps": "none"}, "no pointmap source"),
    ({"pointmaps": "vggt"}, "needs data.vggt_checkpoint"),
])
def test_cameo_without_a_pointmap_source_names_the_options(capture, tmp_path: Path, fields: dict, words: str) -> None:
    folder, _ = capture
    with pytest.raises(ValueError) as info:
        open_parts(_config(folder, **fields), 0, cameo=True, run_dir=tmp_path)
    message = str(info.value)
    assert words in message and "data.pointmaps stereo" in message and "--cameo.no-enabled" in message, message


def test_cameo_off_needs_no_pointmaps(capture, tmp_path: Path) -> None:
    folder, _ = capture
    (part,) = open_parts(_config(folder, pointmaps="none"), 0, cameo=False, run_dir=tmp_path)
    assert "pointmaps" not in part[0] and not (tmp_path / "pointmaps").exists()


def test_correspondence_picture_of_a_real_capture(capture, tmp_path: Path, capsys) -> None:
    from cameo.data.cli import main

    folder, _ = capture
    out = tmp_path / "corr.png"
    code = main(["show", str(out), "--source", "nerfstudio", "--path", str(folder), "--frames", "0", "1",
                 "--resolution", "32", "--tokens", "8", "--pointmap-cache", str(tmp_path / "cache"),
                 "--pointmap-max-side", str(RES)])
    assert code == 0 and "pass the cycle check" in capsys.readouterr().err
    assert Image.open(out).size == (2 * 32 * 4, 3 * 32 * 4)


def test_source_depth_keeps_pixels_with_enough_valid_footprint(capture) -> None:
    from cameo.data.pointmaps import SequenceDepth
    from cameo.data.visualize import pointmap_depth

    folder, _ = capture
    (seq,) = nerfstudio.read_sequences(folder)

    class Holes(SequenceDepth):
        """Depth 2 at the working size 128 (twice the image), every other pixel a hole, the left half all holes."""

        def frame_depth(self, seq, index):
            depth = np.full((128, 128), 2.0, dtype=np.float32)
            depth[::2, ::2] = np.nan
            depth[:, :64] = np.nan
            return depth

    sample = SequenceDataset([seq], num_views=2, resolution=16, pointmaps=Holes()).sample(0, [0, 1], 1)
    valid = torch.isfinite(sample["pointmaps"][0]).all(0)
    assert valid[:, 8:].all() and not valid[:, :8].any()  # 3 of 4 footprint pixels valid: kept; none: NaN
    torch.testing.assert_close(pointmap_depth(sample)[0, :, 8:], torch.full((16, 8), 2.0))


def test_more_stereo_neighbours_fill_holes(capture, tmp_path: Path) -> None:
    folder, exact = capture
    (seq,) = nerfstudio.read_sequences(folder)
    one, two = (StereoPointmaps(tmp_path / str(n), max_side=RES, neighbours=n) for n in (1, 2))
    for i in range(4):
        first, both = one.frame_depth(seq, i), two.frame_depth(seq, i)
        kept = np.isfinite(first)
        np.testing.assert_array_equal(both[kept], first[kept])  # the best neighbour's depth wins where it has one
        assert np.isfinite(both).sum() >= kept.sum()
    assert one.folder(seq) != two.folder(seq)  # settings are part of the cache key


DTU = Path("/work/shared/data/dtu_scan24")


@pytest.mark.skipif(not DTU.is_dir(), reason="needs the DTU scan24 capture of SOURCE.md")
def test_dtu_loader_reads_the_monosdf_layout_with_its_crop() -> None:
    from cameo.data.loaders import dtu
    from cameo.importers import read_cameras_npz

    (seq,) = dtu.read_sequences(DTU)
    crop = np.array([[0.32, 0.0, -64.0], [0.0, 0.32, 0.0], [0.0, 0.0, 1.0]])  # SOURCE.md: 1600x1200 -> 1200 -> 384
    K, c2w = read_cameras_npz(DTU / "cameras.npz", list(range(49)), crop)
    assert len(seq.images) == 49 and seq.images[0].name == "000000_rgb.png"
    torch.testing.assert_close(seq.K, K)
    torch.testing.assert_close(seq.c2w, c2w)
