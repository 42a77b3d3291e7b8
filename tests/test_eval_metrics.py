"""PSNR / SSIM / LPIPS wrappers: known values, clipping, batching."""

import math

import pytest
import torch

from cameo.eval.lpips import LPIPSWeightsMissing
from cameo.eval.metrics import ImageMetrics, psnr, ssim


def test_psnr_identical_is_capped_and_known_mse():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(psnr(x, x), torch.full((2,), 100.0))
    y = torch.full((1, 3, 8, 8), 0.5)
    assert psnr(y + 0.1, y).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 20 dB
    assert psnr(y + 0.01, y).item() == pytest.approx(40.0, abs=1e-3)


def test_psnr_clips_to_unit_range():
    target = torch.ones(1, 3, 8, 8)
    assert psnr(target * 5, target).item() == 100.0  # clipped prediction equals the target
    assert psnr(torch.zeros_like(target), target).item() == pytest.approx(0.0, abs=1e-6)


def test_metrics_flatten_leading_dims_and_reject_bad_shapes():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 3, 32, 32, generator=g), torch.rand(2, 3, 3, 32, 32, generator=g)
    per_image = psnr(x, y)
    assert per_image.shape == (6,)
    assert torch.allclose(per_image[4], psnr(x[1, 1], y[1, 1])[0])
    with pytest.raises(ValueError, match="3, H, W"):
        psnr(torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8))


def test_ssim_identity_one_and_decreasing_with_noise():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 32, 32, generator=g)
    noise = torch.randn(x.shape, generator=g)
    values = ssim(torch.cat([x, x + 0.05 * noise, x + 0.3 * noise]), x.expand(3, -1, -1, -1))
    assert values[0].item() == pytest.approx(1.0, abs=1e-5)
    assert values[0] > values[1] > values[2]


def test_ssim_is_colour_mean_of_channels():
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    x_grey, y_grey = x.clone(), y.clone()
    x_grey[:, 1:] = x_grey[:, :1]
    y_grey[:, 1:] = y_grey[:, :1]
    per_channel = [ssim(x[:, c:c + 1].expand(-1, 3, -1, -1), y[:, c:c + 1].expand(-1, 3, -1, -1)) for c in range(3)]
    assert ssim(x, y).item() == pytest.approx(torch.cat(per_channel).mean().item(), abs=1e-6)


def test_image_metrics_dict_and_lpips_chunks():
    metrics = ImageMetrics(lpips_net="alex", lpips_batch=2)
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(5, 3, 64, 64, generator=g), torch.rand(5, 3, 64, 64, generator=g)
    try:
        out = metrics(x, y)
    except LPIPSWeightsMissing as err:
        pytest.skip(f"LPIPS weights not installed (run `cameo-eval install-lpips`): {err}")
    assert set(out) == {"psnr", "ssim", "lpips"} and all(v.shape == (5,) for v in out.values())
    assert torch.allclose(out["lpips"][3:], metrics.lpips(x[3:], y[3:]), atol=1e-6)
    assert math.isclose(metrics(x, x)["lpips"].abs().max().item(), 0.0, abs_tol=1e-6)
