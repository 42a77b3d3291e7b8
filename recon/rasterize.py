"""3D Gaussian rasterization with ``gsplat.rasterization``'s inputs and outputs, on CUDA and on CPU.

On CUDA this simply calls gsplat's fused kernels. gsplat's rasteriser has no CPU build, so on CPU we project with
gsplat's own pure-torch reference functions and composite with a sparse pixel x Gaussian pair list and a
hand-written backward (:class:`_CompositePairs`): autograd through the pair list would store a dozen tensors per
pair, the custom backward stores two int32 indices and one float per pair. The alpha rule is gsplat's
(``RasterizeToPixels3DGSFwd.cu``): ``alpha = min(0.999, o * exp(-sigma))``, skip if ``sigma < 0`` or
``alpha < 1/255``, stop a pixel before the Gaussian that would bring its transmittance to ``<= 1e-4``.
The returned ``meta`` carries what :class:`gsplat.DefaultStrategy` needs (``means2d`` with gradient, ``radii``,
``width``, ``height``, ``n_cameras``, ``gaussian_ids``), so densification is shared with gsplat.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

ALPHA_MIN = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
ALPHA_MAX = 0.999  # gsplat's alpha clamp
T_MIN = 1e-4  # gsplat stops a pixel once transmittance would fall to this
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
    max_pairs: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Render ``C`` cameras; same arguments and results as ``gsplat.rasterization(..., packed=False)``.

    Args:
        means ``[N,3]``, quats ``[N,4]`` (wxyz, any norm), scales ``[N,3]`` (linear), opacities ``[N]`` (in [0,1]).
        colors: ``[N,D]`` / ``[C,N,D]`` features, or SH coefficients ``[N,K,3]`` when ``sh_degree`` is set.
        viewmats: world-to-camera ``[C,4,4]`` (OpenCV); Ks ``[C,3,3]``.
        backgrounds: ``[C,D]`` constant colours behind the splats (not differentiated on CPU).
        max_pairs: CPU only; pixel x Gaussian pairs processed at once (bounds memory, not the result).

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

    gauss_ids, pixel_ids = _sorted_pairs(means2d.detach(), conics.detach(), opacities_c.detach(), radii, depths.detach(),
                                         width, height, max_pairs)
    bg = backgrounds.detach().reshape(C, 1, D).expand(C, height * width, D).reshape(-1, D) if backgrounds is not None \
        else None
    render, alpha = _CompositePairs.apply(
        means2d.reshape(C * N, 2), conics.reshape(C * N, 3), opacities_c.reshape(C * N), colors_c.reshape(C * N, D),
        gauss_ids, pixel_ids, C * height * width, width, height, bg, max_pairs,
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
        "n_cameras": C, "n_batches": 1, "tile_size": 16, "n_pairs": int(gauss_ids.numel()),
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
def _sorted_pairs(
    means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor, radii: torch.Tensor, depths: torch.Tensor,
    width: int, height: int, max_pairs: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All (Gaussian, pixel) pairs that pass gsplat's alpha threshold, ordered by pixel then depth.

    Gaussians are visited in depth order per camera and pairs are generated inside each radius box (outside it
    ``alpha < 1/255`` by construction of the box), so one stable radix sort by pixel leaves every pixel's list
    front to back. Generation runs in chunks of about ``max_pairs`` to bound memory. Returns int64 flat Gaussian
    ids (``c*N + n``) and int32 flat pixel ids (``c*H*W + y*W + x``).
    """
    C, N = depths.shape
    valid = (radii > 0).all(-1)
    depth_key = torch.where(valid, depths, torch.full_like(depths, math.inf))
    order = torch.argsort(depth_key, dim=1, stable=True)  # [C, N] front to back
    n_valid = valid.sum(1)
    flat = (order + torch.arange(C)[:, None] * N)[torch.arange(N)[None, :] < n_valid[:, None]]  # camera-major
    if C * height * width >= 2**31:
        raise ValueError(f"{C} views of {width}x{height} exceed the int32 pixel index range; render fewer at once")
    m2d, r = means2d.reshape(-1, 2)[flat], radii.reshape(-1, 2)[flat].to(means2d.dtype)
    # pixel (col j, row i) has centre (j + 0.5, i + 0.5); keep centres within [mean - r, mean + r]
    lo = torch.ceil(m2d - r - 0.5).clamp_min(0)
    hi = torch.minimum(torch.floor(m2d + r - 0.5), torch.tensor([width - 1.0, height - 1.0]))
    span = (hi - lo + 1).clamp_min(0)
    counts = (span[:, 0] * span[:, 1]).long()
    first_pixel = ((flat // N) * (height * width) + lo[:, 1].long() * width + lo[:, 0].long()).int()
    # one float table per visible Gaussian, gathered once per pair (small integers are exact in float32)
    table = torch.cat([m2d, conics.reshape(-1, 3)[flat], opacities.reshape(-1)[flat, None], lo, span[:, :1]], 1)
    ends = torch.cumsum(counts, 0)
    gauss_chunks, pixel_chunks = [], []
    start_g = 0
    while start_g < flat.numel():
        base = int(ends[start_g - 1]) if start_g else 0
        end_g = max(int(torch.searchsorted(ends, base + max_pairs, right=True)), start_g + 1)
        n_pairs = int(ends[end_g - 1]) - base
        owner = torch.repeat_interleave(torch.arange(end_g - start_g, dtype=torch.int32), counts[start_g:end_g],
                                        output_size=n_pairs)
        starts = (ends[start_g:end_g] - counts[start_g:end_g] - base).int()
        rows = table[start_g:end_g][owner]
        local = torch.arange(n_pairs, dtype=torch.int32) - starts[owner]
        sx = rows[:, 8].int()
        lx, ly = local % sx, local // sx
        alpha, sigma = _pair_alpha(rows[:, 0:2], rows[:, 2:5], rows[:, 5], rows[:, 6] + lx, rows[:, 7] + ly)
        keep = (sigma >= 0) & (alpha >= ALPHA_MIN)
        owner = owner[keep] + start_g
        gauss_chunks.append(flat[owner])
        pixel_chunks.append(first_pixel[owner] + ly[keep] * width + lx[keep])
        start_g = end_g
    gauss_ids = torch.cat(gauss_chunks) if gauss_chunks else torch.zeros(0, dtype=torch.long)
    pixel_ids = torch.cat(pixel_chunks) if pixel_chunks else torch.zeros(0, dtype=torch.int32)
    pixel_ids, perm = torch.sort(pixel_ids, stable=True)  # int32 keys: torch uses a radix sort
    return gauss_ids[perm], pixel_ids


def _pair_alpha(
    mean2d: torch.Tensor, conic: torch.Tensor, opac: torch.Tensor, px: torch.Tensor, py: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """gsplat's per-pair alpha (clamped at 0.999) and Mahalanobis exponent ``sigma`` for pixels (px, py)."""
    dx = mean2d[:, 0] - (px.to(mean2d.dtype) + 0.5)
    dy = mean2d[:, 1] - (py.to(mean2d.dtype) + 0.5)
    sigma = 0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) + conic[:, 1] * dx * dy
    return torch.clamp_max(opac * torch.exp(-sigma), ALPHA_MAX), sigma


def _pixel_chunks(pixel_ids: torch.Tensor, max_pairs: int) -> list[tuple[int, int]]:
    """Split the pixel-sorted pair list into ranges of about ``max_pairs`` that never cut a pixel's list."""
    M = pixel_ids.numel()
    bounds = [0]
    while bounds[-1] < M:
        target = min(bounds[-1] + max_pairs, M)
        if target < M:  # move back to the first pair of that pixel (or forward if one pixel is larger)
            cut = int(torch.searchsorted(pixel_ids, pixel_ids[target], right=False))
            target = cut if cut > bounds[-1] else int(torch.searchsorted(pixel_ids, pixel_ids[target], right=True))
        bounds.append(target)
    return list(zip(bounds[:-1], bounds[1:]))


def _segments(pix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a pixel-sorted chunk: unique pixels, segment index of every pair, first pair index of each segment."""
    uniq, inverse, counts = torch.unique_consecutive(pix, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    return uniq, inverse, starts


class _CompositePairs(torch.autograd.Function):
    """Front-to-back alpha compositing over a pixel-sorted pair list, with an analytic backward.

    Transmittance is a segmented exclusive cumulative sum of ``log(1 - alpha)`` in float64 (long lists keep their
    precision), exponentiated. Backward, per pixel: ``dL/dalpha_i = T_i g.c_i - (sum_{j>i} w_j g.c_j +
    T_final (g.bg - g_alpha)) / (1 - alpha_i)`` (a reverse segmented cumsum); the geometry is recomputed per pair
    so only the pair indices and ``T_i`` are stored.
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, gauss_ids, pixel_ids, n_pixels, width, height, bg, max_pairs):
        # one [C*N, 6+D] table: a single row gather per pair instead of four
        table = torch.cat([means2d, conics, opacities[:, None], colors], 1)
        out = colors.new_zeros(n_pixels, colors.shape[-1])
        log_t = torch.zeros(n_pixels, dtype=torch.float64)
        kept_g, kept_p, kept_t = [], [], []
        for s, e in _pixel_chunks(pixel_ids, max_pairs):
            g, p = gauss_ids[s:e], pixel_ids[s:e]
            rows = table[g]
            alpha, _ = _pair_alpha(rows[:, 0:2], rows[:, 2:5], rows[:, 5], p % width, (p // width) % height)
            log1m = torch.log1p(-alpha.double())
            _, seg, starts = _segments(p)
            incl = torch.cumsum(log1m, 0)
            base = (incl - log1m)[starts][seg]  # exclusive sum before the pixel's first pair
            keep = torch.exp(incl - base) > T_MIN  # gsplat stops before T drops to <= 1e-4 (monotone, so a prefix)
            trans = torch.exp(incl - log1m - base).to(alpha.dtype)
            g, p, alpha, trans, rows = g[keep], p[keep], alpha[keep], trans[keep], rows[keep]
            out.index_add_(0, p, (alpha * trans)[:, None] * rows[:, 6:])
            log_t.index_add_(0, p, log1m[keep])
            kept_g.append(g)
            kept_p.append(p)
            kept_t.append(trans)
        t_final = torch.exp(log_t).to(colors.dtype)
        if bg is not None:
            out = out + t_final[:, None] * bg
        cat = lambda xs, dt: torch.cat(xs) if xs else torch.zeros(0, dtype=dt)  # noqa: E731
        ctx.save_for_backward(table, cat(kept_g, gauss_ids.dtype), cat(kept_p, pixel_ids.dtype),
                              cat(kept_t, colors.dtype), t_final, bg if bg is not None else colors.new_zeros(0))
        ctx.width, ctx.height, ctx.max_pairs, ctx.has_bg = width, height, max_pairs, bg is not None
        return out, (1.0 - t_final)[:, None]

    @staticmethod
    def backward(ctx, grad_out, grad_alpha):
        table, gauss_ids, pixel_ids, trans_all, t_final, bg = ctx.saved_tensors
        width, height = ctx.width, ctx.height
        grads = torch.zeros_like(table)  # same packing as the table: means2d, conics, opacity, colours
        # per-pixel tail term: T_final * (g . bg - g_alpha)
        tail = -grad_alpha[:, 0]
        if ctx.has_bg:
            tail = tail + (grad_out * bg).sum(-1)
        tail = (t_final * tail).double()
        for s, e in _pixel_chunks(pixel_ids, ctx.max_pairs):
            g, p, trans = gauss_ids[s:e], pixel_ids[s:e], trans_all[s:e]
            rows = table[g]
            m, c, o, col = rows[:, 0:2], rows[:, 2:5], rows[:, 5], rows[:, 6:]
            dx = m[:, 0] - ((p % width).to(m.dtype) + 0.5)
            dy = m[:, 1] - (((p // width) % height).to(m.dtype) + 0.5)
            sigma = 0.5 * (c[:, 0] * dx * dx + c[:, 2] * dy * dy) + c[:, 1] * dx * dy
            vis = torch.exp(-sigma)
            raw = o * vis
            alpha = raw.clamp_max(ALPHA_MAX)
            go = grad_out[p]
            w = alpha * trans
            gdot = (go * col).sum(-1)
            incl = torch.cumsum((w * gdot).double(), 0)
            _, seg, starts = _segments(p)
            ends = torch.cat([starts[1:], starts.new_tensor([incl.numel()])]) - 1
            after = incl[ends][seg] - incl + tail[p]  # sum over later pairs of the same pixel, plus the tail
            g_alpha = trans * gdot - (after / (1.0 - alpha.double())).to(alpha.dtype)
            g_alpha = torch.where(raw > ALPHA_MAX, torch.zeros_like(g_alpha), g_alpha)  # clamped: no gradient
            g_sigma = -g_alpha * alpha
            gx, gy = g_sigma * dx, g_sigma * dy
            grads.index_add_(0, g, torch.cat([
                torch.stack([gx * c[:, 0] + gy * c[:, 1], gx * c[:, 1] + gy * c[:, 2],
                             0.5 * gx * dx, gx * dy, 0.5 * gy * dy, g_alpha * vis], -1),
                w[:, None] * go], 1))
        D = table.shape[1] - 6
        g_means, g_conics, g_opac, g_colors = grads.split([2, 3, 1, D], 1)
        return g_means, g_conics, g_opac[:, 0], g_colors, None, None, None, None, None, None, None
