"""Tiny inputs for pipeline and CLI tests: an untrained ``tiny`` model folder and a two-view synthetic scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cameo.cameras import look_at
from cameo.model import PixelCodec, build_model
from cameo.model_folder import CameoModel, ModelConfig
from cameo.sampling import default_training_schedule
from cameo.scene import Scene, make_frames, save_scene

MODEL_SIZE = 16  # the tiny config's image size
FRAMES_PER_GROUP = 4


def write_tiny_model(folder: Path) -> Path:
    """Untrained ``tiny`` MultiViewUNet (pixel space) exported in the documented layout."""
    torch.manual_seed(0)
    model = build_model("tiny")
    config = ModelConfig.for_unet(model.config, MODEL_SIZE, FRAMES_PER_GROUP)
    schedule = default_training_schedule(model.config.prediction_type)
    return CameoModel(model, PixelCodec(), schedule, config).save_pretrained(folder)


def two_view_cameras() -> tuple[torch.Tensor, torch.Tensor]:
    """Two OpenCV cameras 3 units from the origin, looking at it, 40 degrees apart; K for 24x32 (h x w) images."""
    angles = torch.tensor([-0.35, 0.35])
    eye = torch.stack([3 * torch.sin(angles), torch.zeros(2), -3 * torch.cos(angles)], -1)
    c2w = look_at(eye, torch.zeros(2, 3), torch.tensor([[0.0, -1.0, 0.0]]).expand(2, 3))
    K = torch.tensor([[30.0, 0.0, 16.0], [0.0, 30.0, 12.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    return K, c2w


def write_two_view_scene(folder: Path) -> Path:
    """``scene.json`` with two 32x24 noise images (non-square: exercises resize + centre crop)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = folder / f"input_{i}.png"
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    K, c2w = two_view_cameras()
    return save_scene(Scene(make_frames(paths, K, c2w, [(32, 24)] * 2)), folder / "scene.json")
