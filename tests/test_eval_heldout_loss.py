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


class CopyReferenceModel(torch.nn.Module):
    """Predicts every view as its first (reference) view: its loss depends on which references it is shown."""

    def forward(self, sample, timesteps, plucker, ref_mask, drop_camera=None):
        return sample[:, :1].expand_as(sample)


def test_swapped_references_come_from_the_next_scene():
    scenes = list(procedural_scenes(2, "object", resolution=16))
    schedule = default_training_schedule("v_prediction")
    model = RecordingModel(0.0)
    assert heldout_denoising_loss(model, PixelCodec(), scenes, schedule, swap_references=True) == \
        heldout_denoising_loss(model, PixelCodec(), scenes, schedule)  # a model blind to the inputs: no change
    normal = heldout_denoising_loss(CopyReferenceModel(), PixelCodec(), scenes, schedule)
    swapped = heldout_denoising_loss(CopyReferenceModel(), PixelCodec(), scenes, schedule, swap_references=True)
    assert swapped != normal
    with_twin = heldout_denoising_loss(CopyReferenceModel(), PixelCodec(), [scenes[0], scenes[0]], schedule,
                                       swap_references=True)
    assert with_twin == heldout_denoising_loss(CopyReferenceModel(), PixelCodec(), [scenes[0], scenes[0]], schedule)
