"""Per-step math of cameo-train: references clean, targets-only loss, camera normalisation, CFG dropout."""

from __future__ import annotations

import math

import torch

from cameo.cameras import look_at
from cameo.train.loop import make_noise_scheduler
from cameo.train.config import TrainConfig
from cameo.diffusion import camera_conditioning, denoising_loss, noise_targets
from cameo.train.step import camera_dropout, step_generator


def test_train_references_stay_clean_and_v_target():
    cfg = TrainConfig()
    cfg.diffusion.prediction_type = "v_prediction"
    scheduler = make_noise_scheduler(cfg)
    clean = torch.randn(3, 4, 2, 5, 5)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    out = noise_targets(clean, mask, scheduler, torch.Generator().manual_seed(1))
    assert torch.equal(out.noisy[mask], clean[mask]) and (out.timesteps[mask] == 0).all()
    assert not torch.allclose(out.noisy[~mask], clean[~mask])
    assert (out.timesteps[~mask] == out.timesteps[:, -1:].expand(3, 4)[~mask]).all()  # one t per sample
    # v = a*eps - s*x0  =>  x0 = a*x_t - s*v for the targets
    a = scheduler.alphas_cumprod[out.timesteps].sqrt()[..., None, None, None]
    s = (1 - scheduler.alphas_cumprod[out.timesteps]).sqrt()[..., None, None, None]
    recovered = a * out.noisy - s * out.target
    torch.testing.assert_close(recovered[~mask], clean[~mask], atol=1e-4, rtol=1e-4)


def test_train_loss_ignores_references():
    target = torch.zeros(2, 4, 1, 2, 2)
    pred = torch.zeros_like(target)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    pred[mask] = 100.0
    assert denoising_loss(pred, target, mask) == 0
    pred[0, 2] = 2.0
    assert denoising_loss(pred, target, mask) == 4.0 / 4  # one of the four target views is off by 2


def test_train_loss_weighs_measured_prior_pixels_by_measured_weight():
    from cameo.train.loop import _pixel_weights

    target = torch.zeros(1, 2, 12, 2, 2)  # model space: 4x4 pixels folded 2x2 into 2x2 positions
    pred = torch.ones_like(target)
    pred[0, 1, :, 0, 0] = 3.0  # the error at the measured position is 9, elsewhere 1
    refs = torch.tensor([[True, False]])
    prior = torch.zeros(1, 2, 4, 4, 4)
    prior[0, 1, 3, :2, :2] = 1.0  # the top-left position of the target is measured
    assert _pixel_weights(prior, 1.0, pred) is None  # every pixel alike: the plain loss
    assert denoising_loss(pred, target, refs) == (9 + 3) / 4
    weights = _pixel_weights(prior, 0.25, pred)
    assert weights.shape == (1, 2, 1, 2, 2) and float(weights[0, 1, 0, 0, 0]) == 0.25
    assert denoising_loss(pred, target, refs, weights) == (0.25 * 9 + 3) / 3.25
    assert denoising_loss(pred, target, refs, _pixel_weights(prior, 0.0, pred)) == 1.0  # only what no prior shows


def test_train_camera_conditioning_invariant_to_world_similarity():
    f = 4
    eye = torch.tensor([[2.0, 0, -3], [3, 0.5, -2], [-1, 0, -3.5], [0, -1, -4]])
    c2w = look_at(eye, torch.zeros(f, 3), torch.tensor([0.0, -1, 0]).expand(f, 3))
    K = torch.tensor([[8.0, 0, 4], [0, 8, 4], [0, 0, 1]]).expand(f, 3, 3)
    angle = 0.7
    world = torch.eye(4)
    world[:3, :3] = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0],
                                  [-math.sin(angle), 0, math.cos(angle)]]) * 1.0
    world[:3, 3] = torch.tensor([5.0, -2, 1])
    moved = world @ c2w
    moved[:, :3, 3] *= 3.0  # rescale the world too
    a = camera_conditioning(c2w[None], K[None], 8, 8)
    b = camera_conditioning(moved[None], K[None], 8, 8)
    assert a.shape == (1, f, 6, 8, 8)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_train_camera_dropout_modes_and_rate():
    gen = torch.Generator().manual_seed(0)
    batch = torch.stack([camera_dropout(6, 0.1, "batch", gen) for _ in range(3000)])
    assert ((batch.all(1)) | (~batch.any(1))).all()  # whole batch or nothing
    assert abs(batch[:, 0].float().mean() - 0.1) < 0.02
    sample = torch.stack([camera_dropout(6, 0.1, "sample", gen) for _ in range(3000)])
    assert (sample.any(1) & ~sample.all(1)).any()


def test_train_step_generator_is_keyed_by_position():
    draw = lambda *key: torch.rand(3, generator=step_generator(*key))
    assert torch.equal(draw(0, 5, 0), draw(0, 5, 0))
    assert not torch.equal(draw(0, 5, 0), draw(0, 5, 1))
    assert not torch.equal(draw(0, 5, 0), draw(0, 6, 0))
