"""Held-out denoising loss of the paper-claim benchmark: fixed noise levels and noise, references clean."""

from __future__ import annotations

import torch

from cameo.eval.nvs import LOSS_TIMESTEPS, heldout_denoising_loss, procedural_scenes
from cameo.model import PixelCodec
from cameo.sampling import default_training_schedule


class RecordingModel(torch.nn.Module):
    """Predicts ``scale * sample`` and records every call's timesteps and reference mask."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, sample, timesteps, plucker, ref_mask, drop_camera=None):
        assert drop_camera is None and plucker.shape[:3] == (*sample.shape[:2], 6)
        self.calls.append((timesteps, ref_mask))
        return self.scale * sample


def test_heldout_loss_uses_fixed_noise_levels_and_is_reproducible():
    scenes = list(procedural_scenes(2, "object", resolution=16))
    schedule = default_training_schedule("v_prediction")
    model = RecordingModel(0.0)
    first = heldout_denoising_loss(model, PixelCodec(), scenes, schedule)
    assert set(first) == {"1-to-3 loss", "2-to-2 loss"} and all(v > 0 for v in first.values())
    assert len(model.calls) == 2 * len(scenes)  # one batched forward per scene and setting
    for timesteps, ref_mask in model.calls:
        refs = int(ref_mask[0].sum())
        assert refs in (1, 2) and (timesteps[ref_mask] == 0).all()
        assert torch.equal(timesteps[:, refs], torch.tensor(LOSS_TIMESTEPS))
    assert heldout_denoising_loss(model, PixelCodec(), scenes, schedule) == first  # same noise every call
    other = heldout_denoising_loss(RecordingModel(-0.5), PixelCodec(), scenes, schedule)
    assert other != first  # the loss depends on the prediction
