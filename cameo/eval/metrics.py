"""Image metrics for novel-view synthesis: PSNR, SSIM and LPIPS, vectorised over batches.

Variants (as in the official CAMEO evaluation code):
- PSNR on images clipped to [0, 1]; identical images give `max_db` (100 dB) instead of inf so averages stay finite
  (``cameo.image_metrics``, below training and evaluation alike; re-exported here).
- SSIM on the colour images (per-channel SSIM averaged over RGB), 11x11 Gaussian window, sigma 1.5,
  K = (0.01, 0.03), data range 1, via pytorch_msssim. (MVGenMaster reported grey-scale SSIM; we do not.)
- LPIPS v0.1 with the VGG16 backbone by default; AlexNet as an option (`lpips_net="alex"`).
"""

from __future__ import annotations

import torch
from pytorch_msssim import ssim as _ms_ssim

from cameo.eval.lpips import LPIPS, load_lpips
from cameo.image_metrics import as_image_batch, psnr

METRIC_NAMES = ("psnr", "ssim", "lpips")


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Colour SSIM (11x11 Gaussian window, sigma 1.5) of [..., 3, H, W] images in [0, 1] -> [N]."""
    p, t = as_image_batch(pred, target)
    return _ms_ssim(p, t, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)


class ImageMetrics:
    """PSNR / SSIM / LPIPS of image batches; the LPIPS network is loaded on first use and kept."""

    def __init__(self, lpips_net: str = "vgg", device: str | torch.device = "cpu", lpips_batch: int = 16,
                 with_lpips: bool = True):
        self.lpips_net, self.device, self.lpips_batch, self.with_lpips = lpips_net, device, lpips_batch, with_lpips
        self._lpips: LPIPS | None = None

    def lpips(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """LPIPS of [..., 3, H, W] images in [0, 1] -> [N], computed in chunks of `lpips_batch` images."""
        p, t = as_image_batch(pred, target)
        if self._lpips is None:
            self._lpips = load_lpips(self.lpips_net, device=self.device)
        with torch.no_grad():
            return torch.cat([self._lpips(a.to(self.device), b.to(self.device)).cpu()
                              for a, b in zip(p.split(self.lpips_batch), t.split(self.lpips_batch))])

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'psnr', 'ssim'[, 'lpips']} -> [N] per-image values."""
        out = {"psnr": psnr(pred, target), "ssim": ssim(pred, target)}
        if self.with_lpips:
            out["lpips"] = self.lpips(pred, target)
        return out
