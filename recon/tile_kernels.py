"""Numba kernels of the CPU rasteriser: tile binning, front-to-back compositing and its backward.

gsplat's rasteriser is CUDA only; these follow its algorithm (``RasterizeToPixels3DGS{Fwd,Bwd}.cu``) on CPU threads:
Gaussians are binned into 16x16 pixel tiles in depth order, every pixel walks its tile's list front to back (forward)
and back to front from where it stopped (backward), recomputing each Gaussian's alpha instead of storing per-pair
values. Plain torch ops would need a pixel x Gaussian pair list (millions of rows, several passes over it per step);
a compiled loop touches each pair once. Arrays are flat over cameras: Gaussian row ``c*N + n``, pixel ``c*H*W + y*W + x``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

TILE = 4
ALPHA_MIN = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
ALPHA_MAX = 0.999  # gsplat's alpha clamp
T_MIN = 1e-4  # a pixel stops before the Gaussian that would bring its transmittance to <= this


@njit(cache=True)
def _pixel_box(mx, my, rx, ry, width, height):
    """Pixels whose centres lie within ``[mean - r, mean + r]``: inclusive ``x0, x1, y0, y1`` (empty if x0 > x1)."""
    x0 = max(math.ceil(mx - rx - 0.5), 0)
    x1 = min(math.floor(mx + rx - 0.5), width - 1)
    y0 = max(math.ceil(my - ry - 0.5), 0)
    y1 = min(math.floor(my + ry - 0.5), height - 1)
    return x0, x1, y0, y1


@njit(cache=True)
def bin_tiles(means2d, radii, order, n_valid, width, height):
    """Per tile, the Gaussians whose pixel box touches it, front to back.

    ``means2d [C*N,2]`` float32, ``radii [C*N,2]`` int32, ``order [C,N]`` each camera's Gaussians front to back (the
    first ``n_valid[c]`` are visible). Returns ``offsets [C*T+1]`` int64, ``ids [M]`` int64 (flat Gaussian rows;
    tile ``c*T + ty*tiles_x + tx`` holds ``ids[offsets[k]:offsets[k+1]]``) and every row's pixel box ``[C*N,4]``.
    """
    C, N = order.shape
    tiles_x, tiles_y = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    T = tiles_x * tiles_y
    boxes = np.zeros((C * N, 4), dtype=np.int32)
    boxes[:, 0] = 1  # empty: x0 > x1
    counts = np.zeros(C * T + 1, dtype=np.int64)
    for c in range(C):
        for i in range(n_valid[c]):
            row = c * N + order[c, i]
            x0, x1, y0, y1 = _pixel_box(means2d[row, 0], means2d[row, 1], radii[row, 0], radii[row, 1], width, height)
            boxes[row, 0], boxes[row, 1], boxes[row, 2], boxes[row, 3] = x0, x1, y0, y1
            if x0 > x1 or y0 > y1:
                continue
            for ty in range(y0 // TILE, y1 // TILE + 1):
                for tx in range(x0 // TILE, x1 // TILE + 1):
                    counts[c * T + ty * tiles_x + tx + 1] += 1
    offsets = np.cumsum(counts)
    fill = offsets[:-1].copy()
    ids = np.empty(offsets[-1], dtype=np.int64)
    for c in range(C):
        for i in range(n_valid[c]):
            row = c * N + order[c, i]
            x0, x1, y0, y1 = boxes[row, 0], boxes[row, 1], boxes[row, 2], boxes[row, 3]
            if x0 > x1 or y0 > y1:
                continue
            for ty in range(y0 // TILE, y1 // TILE + 1):
                for tx in range(x0 // TILE, x1 // TILE + 1):
                    k = c * T + ty * tiles_x + tx
                    ids[fill[k]] = row
                    fill[k] += 1
    return offsets, ids, boxes


@njit(cache=True)
def _gather(k, offsets, ids, means2d, conics, opacities, colors, boxes):
    """Tile ``k``'s Gaussians as contiguous field-major tables (gsplat loads them into shared memory the same way):
    geometry ``[6,n]`` (mean x, y, conic a, b, c, opacity), colours ``[D,n]``, pixel boxes ``[4,n]``."""
    n = offsets[k + 1] - offsets[k]
    geo = np.empty((6, n), dtype=np.float64)
    col = np.empty((colors.shape[1], n), dtype=np.float64)
    box = np.empty((4, n), dtype=np.int32)
    for i in range(n):
        row = ids[offsets[k] + i]
        geo[0, i], geo[1, i], geo[5, i] = means2d[row, 0], means2d[row, 1], opacities[row]
        for f in range(3):
            geo[2 + f, i] = conics[row, f]
        for d in range(colors.shape[1]):
            col[d, i] = colors[row, d]
        for f in range(4):
            box[f, i] = boxes[row, f]
    return geo, col, box


@njit(cache=True, inline="always")
def _sigma(geo, box, i, x, y):
    """Mahalanobis exponent of tile Gaussian ``i`` at pixel (x, y) and the offsets dx, dy; -1 outside its box."""
    if x < box[0, i] or x > box[1, i] or y < box[2, i] or y > box[3, i]:
        return -1.0, 0.0, 0.0
    dx, dy = geo[0, i] - (x + 0.5), geo[1, i] - (y + 0.5)
    return 0.5 * (geo[2, i] * dx * dx + geo[4, i] * dy * dy) + geo[3, i] * dx * dy, dx, dy


@njit(cache=True, parallel=True)
def composite_forward(means2d, conics, opacities, colors, boxes, offsets, ids, n_cameras, width, height):
    """Front-to-back compositing of every pixel, tiles in parallel. Returns ``out [C*H*W, D]`` float32, the final
    transmittance ``[C*H*W]`` float64 and ``stop [C*H*W]`` int64: one past the last list entry the pixel used."""
    D = colors.shape[1]
    tiles_x, tiles_y = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    T = tiles_x * tiles_y
    n_pix = n_cameras * height * width
    out = np.zeros((n_pix, D), dtype=np.float32)
    t_final = np.ones(n_pix, dtype=np.float64)
    stop = np.zeros(n_pix, dtype=np.int64)
    for k in prange(n_cameras * T):
        geo, col, box = _gather(k, offsets, ids, means2d, conics, opacities, colors, boxes)
        c, t = k // T, k % T
        ty, tx = t // tiles_x, t % tiles_x
        acc = np.zeros(D, dtype=np.float64)
        for y in range(ty * TILE, min((ty + 1) * TILE, height)):
            for x in range(tx * TILE, min((tx + 1) * TILE, width)):
                trans, end = 1.0, 0
                for d in range(D):
                    acc[d] = 0.0
                for i in range(geo.shape[1]):
                    sigma = _sigma(geo, box, i, x, y)[0]
                    if sigma < 0.0:
                        continue
                    alpha = min(geo[5, i] * math.exp(-sigma), ALPHA_MAX)
                    if alpha < ALPHA_MIN:
                        continue
                    next_t = trans * (1.0 - alpha)
                    if next_t <= T_MIN:
                        break
                    for d in range(D):
                        acc[d] += alpha * trans * col[d, i]
                    trans, end = next_t, i + 1
                p = c * height * width + y * width + x
                for d in range(D):
                    out[p, d] = acc[d]
                t_final[p] = trans
                stop[p] = offsets[k] + end
    return out, t_final, stop


@njit(cache=True, parallel=True)
def composite_backward(means2d, conics, opacities, colors, boxes, offsets, ids, t_final, stop, grad_out, tail,
                       n_cameras, width, height, n_threads):
    """Gradients ``[C*N, 6+D]`` (means2d x, y; conic a, b, c; opacity; colours) of the loss, given ``grad_out
    [C*H*W, D]`` and ``tail [C*H*W]`` = ``T_final * (grad . background - grad_alpha)``.

    Per pixel, back to front: ``dL/dalpha_i = T_i g.c_i - (sum_{j>i} w_j g.c_j + tail) / (1 - alpha_i)``. Work units
    are (camera, slice of its tiles) with one gradient buffer per slice index: units never share a buffer row, and
    the slices are summed in a fixed order, so the result does not depend on thread scheduling."""
    D = colors.shape[1]
    tiles_x, tiles_y = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    T = tiles_x * tiles_y
    S = max(1, min(T, (2 * n_threads + n_cameras - 1) // n_cameras))  # slices per camera
    grads = np.zeros((S, means2d.shape[0], 6 + D), dtype=np.float64)
    for u in prange(n_cameras * S):
        c, s = u // S, u % S
        for t in range(s * T // S, (s + 1) * T // S):
            k = c * T + t
            geo, col, box = _gather(k, offsets, ids, means2d, conics, opacities, colors, boxes)
            local = np.zeros((6 + D, geo.shape[1]), dtype=np.float64)  # this tile's sums, added to rows once
            ty, tx = t // tiles_x, t % tiles_x
            for y in range(ty * TILE, min((ty + 1) * TILE, height)):
                for x in range(tx * TILE, min((tx + 1) * TILE, width)):
                    p = c * height * width + y * width + x
                    trans, after = t_final[p], tail[p]
                    for i in range(stop[p] - offsets[k] - 1, -1, -1):
                        sigma, dx, dy = _sigma(geo, box, i, x, y)
                        if sigma < 0.0:
                            continue
                        vis = math.exp(-sigma)
                        raw = geo[5, i] * vis
                        alpha = min(raw, ALPHA_MAX)
                        if alpha < ALPHA_MIN:
                            continue
                        trans = trans / (1.0 - alpha)
                        w = alpha * trans
                        gdot = 0.0
                        for d in range(D):
                            gdot += grad_out[p, d] * col[d, i]
                            local[6 + d, i] += w * grad_out[p, d]
                        if raw <= ALPHA_MAX:  # a clamped alpha has no gradient
                            g_alpha = trans * gdot - after / (1.0 - alpha)
                            gx, gy = -g_alpha * alpha * dx, -g_alpha * alpha * dy
                            local[0, i] += gx * geo[2, i] + gy * geo[3, i]
                            local[1, i] += gx * geo[3, i] + gy * geo[4, i]
                            local[2, i] += 0.5 * gx * dx
                            local[3, i] += gx * dy
                            local[4, i] += 0.5 * gy * dy
                            local[5, i] += g_alpha * vis
                        after += w * gdot
            for i in range(geo.shape[1]):
                row = ids[offsets[k] + i]
                for f in range(6 + D):
                    grads[s, row, f] += local[f, i]
    total = grads[0].copy()
    for s in range(1, S):
        total += grads[s]
    return total
