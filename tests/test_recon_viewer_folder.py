"""cameo-view reads the views folder next to the ply: input cameras with their photos, path cameras, start pose."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from cameo.cameras import look_at
from cameo.importers import save_nerfstudio
from cameo.scene import make_frames
from recon.splats import Splats, export_ply
from recon.viewer import launch_viewer, views_folder_cameras


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_run(tmp_path):
    """A ply and the ``<stem>_views/`` folder cameo-recon writes: 2 inputs (32x24) around 3 generated (16x16)."""
    n = 30
    g = torch.Generator().manual_seed(0)
    splats = Splats(means=torch.randn(n, 3, generator=g) * 0.3, quats=torch.randn(n, 4, generator=g),
                    scales=torch.full((n, 3), -3.0), opacities=torch.zeros(n), sh0=torch.zeros(n, 1, 3),
                    shN=torch.zeros(n, 0, 3))
    ply = export_ply(splats, tmp_path / "splat.ply")
    work = tmp_path / "splat_views"
    (work / "frames").mkdir(parents=True)
    eyes = torch.stack([torch.linspace(-1, 1, 5), torch.zeros(5), torch.full((5,), -4.0)], -1)
    c2w = look_at(eyes, torch.zeros(5, 3), torch.tensor([0.0, -1.0, 0.0]))
    sizes = [(32, 24)] + [(16, 16)] * 3 + [(32, 24)]
    K = torch.stack([torch.tensor([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]]) for w, h in sizes])
    frames = []
    for i, (w, h) in enumerate(sizes):
        frames.append(work / "frames" / f"{i:04d}.png")
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(frames[-1])
    save_nerfstudio(make_frames(frames, K, c2w, sizes), work / "transforms.json")
    (work / "views.json").write_text(json.dumps({"input_frames": [0, 4], "flythrough": {
        "width": 32, "height": 24, "K": K[[0] * 5].tolist(), "c2w": c2w.tolist(), "input_indices": [0, 4]}}))
    return ply, splats, c2w


def test_views_folder_gives_input_frustums_with_photos_and_path_cameras(tmp_path):
    ply, splats, c2w = _write_run(tmp_path)
    inputs, path = views_folder_cameras(ply)
    assert inputs.name == "inputs" and (inputs.width, inputs.height) == (32, 24)
    assert inputs.images.shape == (2, 3, 24, 32) and inputs.images[1].max() == pytest.approx(160 / 255)
    torch.testing.assert_close(inputs.c2w, c2w[[0, 4]], atol=1e-5, rtol=0)
    assert path.name == "path" and path.c2w.shape == (5, 4, 4) and path.images is None
    session = launch_viewer(splats, [inputs, path], port=_free_port(), verbose=False)
    try:
        np.testing.assert_allclose(session.server.initial_camera.position, c2w[0, :3, 3].numpy(), atol=1e-5)
        axis = session.server.initial_camera.look_at - session.server.initial_camera.position
        np.testing.assert_allclose(axis / np.linalg.norm(axis), c2w[0, :3, 2].numpy(), atol=1e-5)
        assert len(session.frustums) == 7
    finally:
        session.stop()


def test_a_ply_without_views_folder_has_no_cameras_and_a_broken_one_is_named(tmp_path):
    ply, _, _ = _write_run(tmp_path)
    assert views_folder_cameras(tmp_path / "other.ply") == []
    (tmp_path / "splat_views" / "views.json").write_text("{}")
    with pytest.raises(ValueError, match="splat_views: unreadable views folder"):
        views_folder_cameras(ply)
