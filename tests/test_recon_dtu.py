"""Fitting real DTU views (skipped when the shared scan is absent; slow: minutes on 2 CPU cores)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cameo.eval.metrics import psnr
from recon.fit import FitConfig, fit_gaussians
from recon.splats import render

DTU = Path("/work/shared/data/dtu_scan24")


def _load_dtu():
    spec = importlib.util.spec_from_file_location("bench_fit_dtu", Path(__file__).parents[1] / "benchmarks" / "bench_fit_dtu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_dtu


@pytest.mark.slow
@pytest.mark.skipif(not (DTU / "cameras.npz").exists(), reason="DTU scan24 not available")
def test_recon_dtu_fit_generalises_to_held_out_view():
    torch.set_num_threads(1)
    images, K, c2w = _load_dtu()(DTU, 48)
    train, test = list(range(0, 49, 3)), [22]
    cfg = FitConfig(iterations=120, num_points=3000, seed=0)
    splats = fit_gaussians(images[train], K[train], c2w[train], cfg, show_progress=False)
    held_out = psnr(render(splats, K[test], c2w[test], 48, 48), images[test]).item()
    mean_colour = psnr(images[train].mean((0, 2, 3))[None, :, None, None].expand_as(images[test]), images[test]).item()
    assert held_out > mean_colour + 3.0, (held_out, mean_colour)
