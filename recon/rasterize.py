"""3D Gaussian rasterization with ``gsplat.rasterization``'s inputs and outputs, on CUDA and on CPU.

On CUDA this simply calls gsplat's fused kernels. gsplat's rasteriser has no CPU build, so on CPU we project with
gsplat's own pure-torch reference functions and composite with gsplat's tile algorithm compiled by numba
(:mod:`recon.tile_kernels`) behind an analytic backward (:class:`_CompositeTiles`). The alpha rule is gsplat's
(``RasterizeToPixels3DGSFwd.cu``): ``alpha = min(0.999, o * exp(-sigma))``, skip if ``sigma < 0`` or
``alpha < 1/255``, stop a pixel before the Gaussian that would bring its transmittance to ``<= 1e-4``.
The returned ``meta`` carries what :class:`gsplat.DefaultStrategy` needs (``means2d`` with gradient, ``radii``,
``width``, ``height``, ``n_cameras``, ``gaussian_ids``), so densification is shared with gsplat.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

from recon import tile_kernels
from recon.tile_kernels import ALPHA_MIN

RADIUS_SIGMAS = 3.33  # gsplat's bounding-box extent in standard deviations
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


def covariances(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """3D covariances ``[N,3,3]`` of Gaussians from quaternions ``[N,4]`` (normalised here) and scales ``[N,3]``.

    gsplat's pure-torch reference functions are private (``gsplat.cuda._torch_impl``): they are imported only in
    this module, and the rest of the project uses these wrappers."""
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    return covars


def project_gaussians(means: torch.Tensor, covars: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                      width: int, height: int, **options: Any) -> tuple[torch.Tensor, ...]:
    """gsplat's pure-torch projection into ``C`` cameras: ``(radii, means2d [C,N,2], depths, conics,
    compensations)``; ``options``: ``eps2d``, ``near_plane``, ``far_plane``."""
    return _fully_fused_projection(means, covars, viewmats, Ks, width, height, **options)


def rasterization(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    backgrounds: torch.Tensor | None = None,
    render_mode: str = "RGB",
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Render ``C`` cameras; same arguments and results as ``gsplat.rasterization(..., packed=False)``.

    Args:
        means ``[N,3]``, quats ``[N,4]`` (wxyz, any norm), scales ``[N,3]`` (linear), opacities ``[N]`` (in [0,1]).
        colors: ``[N,D]`` / ``[C,N,D]`` features, or SH coefficients ``[N,K,3]`` when ``sh_degree`` is set.
        viewmats: world-to-camera ``[C,4,4]`` (OpenCV); Ks ``[C,3,3]``.
        backgrounds: ``[C,D]`` constant colours behind the splats (not differentiated on CPU).

    Returns:
        ``render_colors [C,H,W,D]``, ``render_alphas [C,H,W,1]``, ``meta`` (``means2d [C,N,2]`` keeps its gradient,
        ``radii [C,N,2]`` int32, ``depths``, ``conics``, ``opacities``, ``width``, ``height``, ``n_cameras``, ...).
    """
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    if means.is_cuda:
        import gsplat

        return gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
            far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree, backgrounds=backgrounds,
            render_mode=render_mode, packed=False,
        )
    C, N = viewmats.shape[0], means.shape[0]
    _, means2d, depths, conics, _ = project_gaussians(
        means, covariances(quats, scales), viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane,
        far_plane=far_plane,
    )
    radii = _opacity_aware_radii(means2d, conics, depths, opacities, width, height, near_plane, far_plane)
    opacities_c = opacities[None, :].expand(C, N)
    colors_c = _view_colors(means, colors, viewmats, sh_degree)
    if render_mode != "RGB":
        colors_c = depths[..., None] if render_mode in ("D", "ED") else torch.cat([colors_c, depths[..., None]], -1)
        if backgrounds is not None:
            zeros = backgrounds.new_zeros(C, 1)
            backgrounds = zeros if render_mode in ("D", "ED") else torch.cat([backgrounds, zeros], -1)
    D = colors_c.shape[-1]

    order, n_visible = _depth_order(depths.detach(), radii)
    bg = backgrounds.detach().reshape(C, 1, D).expand(C, height * width, D).reshape(-1, D) if backgrounds is not None \
        else None
    render, alpha = _CompositeTiles.apply(
        means2d.reshape(C * N, 2), conics.reshape(C * N, 3), opacities_c.reshape(C * N), colors_c.reshape(C * N, D),
        radii.reshape(C * N, 2), order, n_visible, width, height, bg,
    )
    render_colors = render.reshape(C, height, width, D)
    render_alphas = alpha.reshape(C, height, width, 1)
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1
        )
    meta = {
        "camera_ids": None, "gaussian_ids": None, "batch_ids": None, "radii": radii, "means2d": means2d,
        "depths": depths, "conics": conics, "opacities": opacities_c, "width": width, "height": height,
        "n_cameras": C, "n_batches": 1, "tile_size": tile_kernels.TILE,
    }
    return render_colors, render_alphas, meta


def _view_colors(
    means: torch.Tensor, colors: torch.Tensor, viewmats: torch.Tensor, sh_degree: int | None
) -> torch.Tensor:
    """Per-camera colours ``[C,N,D]``; SH evaluated toward each camera centre as gsplat does (+0.5, clamp at 0)."""
    C, N = viewmats.shape[0], means.shape[0]
    if sh_degree is None:
        return colors if colors.dim() == 3 else colors[None].expand(C, N, colors.shape[-1])
    campos = torch.inverse(viewmats)[:, :3, 3]
    dirs = means[None, :, :] - campos[:, None, :]
    coeffs = colors if colors.dim() == 4 else colors[None].expand(C, *colors.shape)
    return torch.clamp_min(_spherical_harmonics(sh_degree, dirs, coeffs) + 0.5, 0.0)


@torch.no_grad()
def _opacity_aware_radii(
    means2d: torch.Tensor, conics: torch.Tensor, depths: torch.Tensor, opacities: torch.Tensor,
    width: int, height: int, near_plane: float, far_plane: float,
) -> torch.Tensor:
    """Pixel radii ``[C,N,2]`` int32 as gsplat's CUDA projection computes them (0 = culled).

    The pure-torch projection uses a fixed 3.33 sigma box; the CUDA one shrinks it to where ``o * exp(-sigma)``
    drops below 1/255 and culls Gaussians fainter than that, which changes ``radii`` (seen by DefaultStrategy).
    """
    a, b, c = conics.unbind(-1)
    det_inv = a * c - b * b
    cov_xx, cov_yy = c / det_inv, a / det_inv
    opac = opacities[None, :].expand_as(a)
    extend = torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_MIN) / ALPHA_MIN)).clamp_max(RADIUS_SIGMAS)
    radii = torch.stack([torch.ceil(extend * cov_xx.sqrt()), torch.ceil(extend * cov_yy.sqrt())], -1)
    valid = (det_inv > 0) & (depths > near_plane) & (depths < far_plane) & (opac >= ALPHA_MIN)
    valid &= (radii > 0).any(-1)
    x, y = means2d[..., 0], means2d[..., 1]
    valid &= (x + radii[..., 0] > 0) & (x - radii[..., 0] < width) & (y + radii[..., 1] > 0) & (y - radii[..., 1] < height)
    return torch.where(valid[..., None], radii, torch.zeros_like(radii)).nan_to_num(0.0).int()


@torch.no_grad()
def _depth_order(depths: torch.Tensor, radii: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each camera's Gaussians front to back (visible ones first): ``order [C,N]`` int64, ``n_visible [C]``."""
    valid = (radii > 0).all(-1)
    depth_key = torch.where(valid, depths, torch.full_like(depths, math.inf))
    return torch.argsort(depth_key, dim=1, stable=True), valid.sum(1)


def _numpy(t: torch.Tensor, dtype=None) -> np.ndarray:
    """A contiguous numpy view (or copy, if ``dtype`` differs) of a CPU tensor, without its graph."""
    a = t.detach().contiguous().numpy()
    return a if dtype is None else a.astype(dtype, copy=False)


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back alpha compositing over depth-sorted tile lists (:mod:`recon.tile_kernels`), analytic backward.

    Forward stores per pixel where its walk stopped and its final transmittance; backward walks the same lists back
    to front and recomputes each alpha, so memory is the tile lists, not a pixel x Gaussian pair list.
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, radii, order, n_visible, width, height, bg):
        C = order.shape[0]
        numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
        offsets, ids, boxes = tile_kernels.bin_tiles(_numpy(means2d), _numpy(radii, np.int32), _numpy(order),
                                                     _numpy(n_visible), width, height)
        arrays = (_numpy(means2d), _numpy(conics), _numpy(opacities), _numpy(colors), boxes)
        out, t_final, stop = tile_kernels.composite_forward(*arrays, offsets, ids, C, width, height)
        out, t_final = torch.from_numpy(out), torch.from_numpy(t_final)
        if bg is not None:
            out = out + t_final.float()[:, None] * bg
        ctx.arrays, ctx.lists, ctx.stop = arrays, (offsets, ids), stop
        ctx.t_final, ctx.bg, ctx.shape = t_final, bg, (C, width, height)
        return out, (1.0 - t_final).float()[:, None]

    @staticmethod
    def backward(ctx, grad_out, grad_alpha):
        C, width, height = ctx.shape
        tail = -grad_alpha[:, 0].double()
        if ctx.bg is not None:
            tail = tail + (grad_out * ctx.bg).sum(-1).double()
        tail = ctx.t_final * tail
        grads = tile_kernels.composite_backward(*ctx.arrays, *ctx.lists, _numpy(ctx.t_final), ctx.stop,
                                                _numpy(grad_out, np.float32), _numpy(tail), C, width, height,
                                                numba.get_num_threads())
        D = grads.shape[1] - 6
        g_means, g_conics, g_opac, g_colors = torch.from_numpy(grads).float().split([2, 3, 1, D], 1)
        return g_means, g_conics, g_opac[:, 0], g_colors, None, None, None, None, None, None
