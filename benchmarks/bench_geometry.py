"""Geometry from the inputs: stereo accuracy, warped-render baselines, a real capture, and timing (prints tables).

    python benchmarks/bench_geometry.py [--scenes 8] [--resolution 256] [--skip dtu time ...]

1. Depth accuracy on held-out procedural pairs (demo split, object and room): the reference pair (views 0, 1) of
   the 2-to-2 evaluation scenes, and a wider pair (views 0 and 7 of an 8-view render of the same scene index),
   against exact depth: share of valid pixels within 2 % / 5 % relative z error, and coverage (valid pixels among
   those seen by both views, from the exact depth); then with the plain holes filled (`cameo.geometry.fill`, what
   the reconstruction and the evaluation use): coverage and the filled pixels' share within 10 %.
2. The warped-render baseline of `cameo-eval nvs` 2-to-2 (64x64, 8 mixed scenes): references forward-warped into
   the targets through stereo depth (matches only, and plain holes filled) vs exact depth, holes = the
   references' mean colour; PSNR / SSIM / LPIPS.
3. DTU scan24 (384 px): view C predicted by warping views A and B (10-20 deg apart, C between them) through their
   stereo depth vs a flat plane at the median stereo depth: mean abs error and PSNR on pixels both cover.
4. Time of a stereo pair at 64, 128, 256 px, and of warping a cloud into 98 path cameras.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from cameo.cameras import project_points, unproject_depth
from cameo.data.procedural import generate_scene
from cameo.eval.baselines import reference_cloud, warped_references
from cameo.eval.metrics import ImageMetrics
from cameo.eval.nvs import mixed_procedural_scenes
from cameo.geometry.cloud import fuse_depth, scene_point_cloud
from cameo.geometry.fill import fill_plain_holes
from cameo.geometry.stereo import StereoResult, _sample_depth, two_view_depth
from cameo.geometry.warp import render_points
from trajectories.paths import two_view_path

DTU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dtu_scan24"


def covisible(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, tol: float = 0.02) -> torch.Tensor:
    """``[2,H,W]``: pixels with a surface that the other view sees too (in its image, not occluded, exact depth)."""
    out = []
    height, width = depth.shape[-2:]
    for ref in range(2):
        points = unproject_depth(depth[ref], K[ref], c2w[ref]).reshape(-1, 3)
        uv, z = project_points(points, K[1 - ref], c2w[1 - ref])
        other = _sample_depth(depth[1 - ref], uv)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height) & (z > 0)
        out.append((inside & ((z - other).abs() < tol * other)).reshape(height, width) & torch.isfinite(depth[ref]))
    return torch.stack(out)


def plain_filled(result: StereoResult, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth with the plain holes filled as ``cameo-recon`` fills them (seeded by the fronto-parallel matches only,
    the level sweep's depth kept as matched), and the mask of the filled pixels."""
    seeds = torch.where(result.level, torch.full_like(result.depth, float("nan")), result.depth)
    depth, filled = fill_plain_holes(seeds, images)
    return torch.where(result.level, result.depth, depth), filled & ~result.level


def pair_accuracy(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, depth: torch.Tensor) -> dict[str, float]:
    """Within-2 % / within-5 % shares of the valid pixels, coverage of the co-visible pixels, seconds."""
    start = time.perf_counter()
    result = two_view_depth(images, K, c2w)
    seconds = time.perf_counter() - start
    both = covisible(depth, K, c2w)
    valid = result.valid & torch.isfinite(depth)
    rel = ((result.depth - depth).abs() / depth)[valid]
    share = (lambda x: float(x.float().mean())) if rel.numel() else (lambda x: 0.0)  # noqa: E731
    filled_depth, filled = plain_filled(result, images)
    filled_rel = ((filled_depth - depth).abs() / depth)[filled & torch.isfinite(depth)]
    return {"w2": share(rel < 0.02), "w5": share(rel < 0.05), "covered": int((result.valid & both).sum()),
            "covisible": int(both.sum()), "valid": int(valid.sum()), "s": seconds, "angle": _angle(c2w[0], c2w[1]),
            "covered_filled": int(((result.valid | filled) & both).sum()), "filled": int(filled_rel.numel()),
            "filled_w10": int((filled_rel < 0.10).sum())}


def _tensors(scene) -> tuple[torch.Tensor, ...]:
    images = torch.from_numpy(scene.rgb).permute(0, 3, 1, 2).float() / 255
    return images, torch.from_numpy(scene.K), torch.from_numpy(scene.c2w), torch.from_numpy(scene.depth)


def accuracy_table(count: int, resolution: int) -> None:
    """Table 1: per kind and pair set, pixel-weighted shares (valid-weighted accuracy, co-visible-weighted cover)."""
    print(f"\n## Stereo depth vs exact depth, held-out procedural pairs at {resolution} px ({count} scenes per kind)")
    print("Coverage: valid co-visible pixels over all co-visible pixels of the pairs (pixel-weighted, so pairs that"
          " barely overlap count little); angles: median (min-max) between the two cameras' axes.")
    print("| kind | pair | angle, deg | within 2 % | within 5 % | coverage | valid px / pair | s / pair | "
          "coverage, holes filled | filled px / pair, within 10 % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("object", "room"):
        for label, views, pair in (("2-to-2 refs (0,1)", 4, [0, 1]), ("wide (0,7 of 8)", 8, [0, 7])):
            rows = []
            for index in range(count):
                images, K, c2w, depth = _tensors(generate_scene(kind, 0, index, views, resolution, split="demo"))
                rows.append(pair_accuracy(images[pair], K[pair], c2w[pair], depth[pair]))
            weight = np.array([r["valid"] for r in rows], dtype=float) + 1e-9
            w2 = np.average([r["w2"] for r in rows], weights=weight)
            w5 = np.average([r["w5"] for r in rows], weights=weight)
            angles = [r["angle"] for r in rows]
            coverage = sum(r["covered"] for r in rows) / max(1, sum(r["covisible"] for r in rows))
            filled = sum(r["covered_filled"] for r in rows) / max(1, sum(r["covisible"] for r in rows))
            filled_ok = sum(r["filled_w10"] for r in rows) / max(1, sum(r["filled"] for r in rows))
            print(f"| {kind} | {label} | {np.median(angles):.0f} ({min(angles):.0f}-{max(angles):.0f}) | {w2:.3f} | "
                  f"{w5:.3f} | {coverage:.3f} | {weight.mean():.0f} | {np.mean([r['s'] for r in rows]):.2f} | "
                  f"{filled:.3f} | {np.mean([r['filled'] for r in rows]):.0f}, {filled_ok:.3f} |", flush=True)


def warped_table(count: int) -> None:
    """Table 2: the warped-reference baseline in 2-to-2 at 64x64 with stereo vs exact depth."""
    metrics = ImageMetrics()
    photo = "stereo on the 256 px photos, plain holes filled (cameo-recon, cameo-eval nvs)"
    scores: dict[str, list[dict[str, torch.Tensor]]] = {"stereo depth": [], "stereo depth, plain holes filled": [],
                                                        photo: [], "exact depth": []}
    for scene in mixed_procedural_scenes(count, 64, photo_resolution=256):
        w2c_z = torch.linalg.inv(scene.c2w)[:, 2]
        points = scene.pointmaps.permute(0, 2, 3, 1)
        exact = (points @ w2c_z[:, None, None, :3].transpose(-1, -2)).squeeze(-1) + w2c_z[:, None, None, 3]
        refs = scene.images[:2], scene.K[:2], scene.c2w[:2]
        found = two_view_depth(*refs)
        stereo, filled = found.depth, plain_filled(found, refs[0])[0]
        for name, depth in (("stereo depth", stereo), ("stereo depth, plain holes filled", filled),
                            ("exact depth", exact[:2])):
            cloud = fuse_depth(refs[0], depth, refs[1], refs[2], max_points=depth.numel())
            pred = warped_references(refs[0], cloud, scene.K[2:], scene.c2w[2:])
            scores[name].append(metrics(pred, scene.images[2:]))
        cloud = reference_cloud(*refs, None, "stereo", (scene.photos[0][:2], scene.photos[1][:2]))
        scores[photo].append(metrics(warped_references(refs[0], cloud, scene.K[2:], scene.c2w[2:]), scene.images[2:]))
    print(f"\n## Warped references, 2-to-2 at 64x64 ({count} mixed held-out scenes, holes = mean colour)")
    print("| depth | PSNR | SSIM | LPIPS |")
    print("|---|---|---|---|")
    for name, rows in scores.items():
        mean = {k: float(torch.cat([r[k] for r in rows]).mean()) for k in ("psnr", "ssim", "lpips")}
        print(f"| {name} | {mean['psnr']:.2f} | {mean['ssim']:.3f} | {mean['lpips']:.3f} |", flush=True)


def dtu_view(index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image ``[3,384,384]``, K and OpenCV c2w of DTU scan24 view ``index`` (crop fix of SOURCE.md applied)."""
    cameras = np.load(DTU / "cameras.npz")
    crop = np.array([[0.32, 0, -64], [0, 0.32, 0], [0, 0, 1]])
    K, R, centre = cv2.decomposeProjectionMatrix(crop @ cameras[f"world_mat_{index}"][:3, :4])[:3]
    K = K / K[2, 2]
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = R.T, (centre[:3] / centre[3]).ravel()
    image = np.asarray(Image.open(DTU / f"{index:06d}_rgb.png").convert("RGB"))
    return (torch.from_numpy(image).permute(2, 0, 1).float() / 255, torch.from_numpy(K).float(),
            torch.from_numpy(c2w).float())


def _angle(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = ((a[:3, :3].T @ b[:3, :3]).trace() - 1) / 2
    return float(torch.rad2deg(torch.arccos(cos.clamp(-1, 1))))


def dtu_table(triples: int = 6) -> None:
    """Table 3: view C from A and B warped through stereo depth vs a flat plane at the median depth."""
    views = [dtu_view(i) for i in range(49)]
    found = []
    for a in range(49):
        for b in range(a + 1, 49):
            if 10 <= _angle(views[a][2], views[b][2]) <= 20:
                mid = [c for c in range(49) if c not in (a, b)
                       and max(_angle(views[c][2], views[a][2]), _angle(views[c][2], views[b][2])) <
                       _angle(views[a][2], views[b][2])]
                if mid:
                    found.append((a, b, mid[0]))
    picked = found[:: max(1, len(found) // triples)][:triples]
    print(f"\n## DTU scan24: view C predicted from A, B (10-20 deg apart; {len(picked)} triples of {len(found)})")
    print("| A, B, C | angle | stereo valid | stereo MAE / PSNR | plane MAE / PSNR | covered by both |")
    print("|---|---|---|---|---|---|")
    for a, b, c in picked:
        images = torch.stack([views[a][0], views[b][0]])
        K, c2w = torch.stack([views[a][1], views[b][1]]), torch.stack([views[a][2], views[b][2]])
        result = two_view_depth(images, K, c2w)
        median = float(result.depth[result.valid].median())
        renders = {}
        for name, depth in (("stereo", result.depth), ("plane", torch.full_like(result.depth, median))):
            cloud = fuse_depth(images, depth, K, c2w)
            renders[name] = render_points(cloud.points, cloud.colors, views[c][1][None], views[c][2][None], 384, 384,
                                          cloud.sizes)
        both = renders["stereo"].mask[0] & renders["plane"].mask[0]
        cells = []
        for name in ("stereo", "plane"):
            err = (renders[name].rgb[0] - views[c][0])[:, both]
            mae, mse = float(err.abs().mean()), float(err.pow(2).mean())
            cells.append(f"{mae:.4f} / {-10 * np.log10(mse):.2f}")
        print(f"| {a}, {b}, {c} | {_angle(c2w[0], c2w[1]):.0f} | {float(result.valid.float().mean()):.2f} | "
              f"{cells[0]} | {cells[1]} | {float(both.float().mean()):.2f} |", flush=True)


def timing_table() -> None:
    """Table 4: stereo seconds per pair by resolution, and warping a cloud into 98 path cameras."""
    print(f"\n## Time (torch threads: {torch.get_num_threads()})")
    print("| step | size | seconds |")
    print("|---|---|---|")
    for resolution in (64, 128, 256):
        images, K, c2w, _ = (x[:2] for x in _tensors(generate_scene("room", 0, 0, 4, resolution, split="demo")))
        two_view_depth(images, K, c2w)  # warm-up
        start = time.perf_counter()
        two_view_depth(images, K, c2w)
        print(f"| stereo pair | {resolution} px | {time.perf_counter() - start:.2f} |", flush=True)
        if resolution != 256:
            continue
        cloud = scene_point_cloud(images, K, c2w)
        path = two_view_path(c2w, K, 98)
        for size in (64, 256):
            scale = size / resolution
            K_path = path.K.clone()
            K_path[:, :2] *= scale
            start = time.perf_counter()
            render_points(cloud.points, cloud.colors, K_path, path.c2w, size, size, cloud.sizes)
            print(f"| warp {len(cloud)} points into {len(path)} cameras | {size} px | "
                  f"{time.perf_counter() - start:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8, help="scenes per kind (accuracy) / mixed scenes (warping)")
    parser.add_argument("--resolution", type=int, default=256, help="stereo accuracy resolution")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=("accuracy", "low-res", "warp", "dtu", "time"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "accuracy" not in args.skip:
        accuracy_table(args.scenes, args.resolution)
    if "low-res" not in args.skip:
        accuracy_table(args.scenes, 64)
    if "warp" not in args.skip:
        warped_table(args.scenes)
    if "dtu" not in args.skip:
        dtu_table()
    if "time" not in args.skip:
        timing_table()


if __name__ == "__main__":
    main()
