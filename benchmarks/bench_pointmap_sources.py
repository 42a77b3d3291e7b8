"""Stereo pointmaps of a real capture for CAMEO training: time per sequence, valid pixels, and the share of tokens
that pass the cycle check per view pair, on DTU scan24 and on a nerfstudio-format copy of it made with a made-up
lens distortion (declared in k1/k2, so the loader undistorts it on load).

    python benchmarks/bench_pointmap_sources.py [--dtu /work/shared/data/dtu_scan24] [--work /tmp/bench_pointmaps]
        [--max-side 256] [--resolution 64] [--tokens 16] [--samples 12] [--neighbours 1]

Prints markdown tables; procedural scenes (exact depth known) give the pass share of exact-depth pointmaps beside
the stereo ones. The stereo cache lives under --work (a second run reads it: the time column is then the
first run's, from the cache's summary.json). The distorted copy is written under --work (never committed).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from cameo.correspondence import token_correspondences
from cameo.data.loaders import dtu, nerfstudio
from cameo.data.loaders.common import Sequence, SequenceDataset
from cameo.data.procedural import generate_scene
from cameo.data.stereo_pointmaps import StereoPointmaps
from cameo.importers.nerfstudio import opencv_to_opengl
from cameo.undistort import pinhole_intrinsics

K1, K2 = -0.12, 0.02  # the made-up lens: barrel distortion like a phone's main camera
ZOOM = 1.15  # the distorted photos see a little less than the DTU images, so every pixel of them is known
ANGLE_BINS = (0.0, 10.0, 20.0, 40.0, 180.0)


def distorted_copy(scan: Path, out: Path) -> Path:
    """``out/transforms.json`` + PNGs: every DTU image as seen through the lens (fl = ZOOM x DTU's, k1, k2)."""
    (seq,) = dtu.read_sequences(scan)
    if (out / "transforms.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for i, path in enumerate(seq.images):
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        K = seq.K[i].numpy()
        raw = np.array([[K[0, 0] * ZOOM, 0, K[0, 2]], [0, K[1, 1] * ZOOM, K[1, 2]], [0, 0, 1.0]])
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))  # OpenCV convention
        cv_raw, cv_K = raw - np.diag([0, 0, 0]), K.copy()
        cv_raw[:2, 2] -= 0.5
        cv_K[:2, 2] -= 0.5
        ideal = cv2.undistortPoints(np.stack([u, v], -1).reshape(-1, 1, 2), cv_raw, np.array([K1, K2, 0, 0]),
                                    P=cv_K).reshape(h, w, 2).astype(np.float32)
        photo = cv2.remap(image, ideal[..., 0], ideal[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        Image.fromarray(photo).save(out / f"{i:06d}.png")
        frames.append({"file_path": f"{i:06d}.png", "fl_x": raw[0, 0], "fl_y": raw[1, 1], "cx": raw[0, 2],
                       "cy": raw[1, 2], "w": w, "h": h, "k1": K1, "k2": K2, "p1": 0.0, "p2": 0.0,
                       "transform_matrix": opencv_to_opengl(seq.c2w[i].numpy()).tolist()})
    (out / "transforms.json").write_text(json.dumps({"camera_model": "OPENCV", "frames": frames}))
    return out


def undistortion_error(scan: Path, copy: Path, index: int = 0) -> float:
    """Mean absolute grey-level difference (0-255) between the undistorted copy of image ``index`` and the DTU image
    mapped into the undistorted image's intrinsics (a pure intrinsics change: a homography), 8 px border left out."""
    (seq,) = dtu.read_sequences(scan)
    (ns,) = nerfstudio.read_sequences(copy)
    ours = (ns.image(index).permute(1, 2, 0).numpy() * 255).astype(np.float32)
    K, new = seq.K[index].numpy().copy(), ns.K[index].numpy().copy()
    K[:2, 2] -= 0.5
    new[:2, 2] -= 0.5
    image = np.asarray(Image.open(seq.images[index]).convert("RGB")).astype(np.float32)
    want = cv2.warpPerspective(image, K @ np.linalg.inv(new), image.shape[1::-1],
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return float(np.abs(ours - want)[8:-8, 8:-8].mean())


def procedural_capture(work: Path, kind: str, index: int, size: int = 128) -> Sequence:
    """An 8-view procedural scene written as PNGs, with its exact depth (``read_depth``), as a real sequence."""
    scene = generate_scene(kind, 0, index, views=8, resolution=size, split="demo")
    folder = work / f"procedural-{kind}-{index}"
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(scene.rgb):
        Image.fromarray(rgb).save(folder / f"{i}.png")
    images = [folder / f"{i}.png" for i in range(len(scene.rgb))]
    return Sequence(f"{kind}-{index}", images, torch.from_numpy(scene.K).double(),
                    torch.from_numpy(scene.c2w).double(), images, lambda path, i: scene.depth[i])


def _angle(c2w: torch.Tensor, i: int, j: int) -> float:
    cos = float(c2w[i, :3, 2] @ c2w[j, :3, 2])
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def pass_shares(data: SequenceDataset, tokens: int, samples: int) -> dict[int, list[float]]:
    """Cycle-check pass share of every ordered view pair of ``samples`` training samples, by angle bin."""
    seq = data.sequences[0]
    by_bin: dict[int, list[float]] = {b: [] for b in range(len(ANGLE_BINS) - 1)}
    for epoch in range(samples):
        data.set_epoch(epoch)
        rng = np.random.default_rng([0, epoch, 0])
        views = [int(v) for v in rng.choice(len(seq.images), size=data.num_views, replace=False)]
        valid = token_correspondences(data.sample(0, views, 1)["pointmaps"][None], (tokens, tokens)).valid[0]
        for a in range(len(views)):
            for b in range(len(views)):
                if a != b:
                    angle = _angle(seq.c2w, views[a], views[b])
                    bin_ = int(np.searchsorted(ANGLE_BINS, angle, side="right") - 1)
                    by_bin[min(bin_, len(ANGLE_BINS) - 2)].append(float(valid[a, b].float().mean()))
    return by_bin


def _row(name: str, kind: str, data: SequenceDataset, stereo: tuple[float, float] | None,
         shares: dict[int, list[float]], agree: float | None = None) -> None:
    frames = len(data.sequences[0].images)
    cells = " | ".join(f"{100 * np.mean(v):.1f} % (n={len(v)})" if v else "-" for v in shares.values())
    timing = f"{stereo[0]:.0f} | {stereo[0] / frames:.2f} | {100 * stereo[1]:.1f} %" if stereo else "- | - | -"
    right = "-" if agree is None else f"{100 * agree:.1f} %"
    print(f"| {name} | {kind} | {frames} | {timing} | {cells} | {right} |", flush=True)


def agreement(exact: SequenceDataset, stereo: SequenceDataset, tokens: int, samples: int) -> float:
    """Share of the stereo matches that pass the cycle check and land within 1.5 tokens of the exact-depth match
    (which must pass too), over the ordered pairs of the same samples as :func:`pass_shares`."""
    seq = exact.sequences[0]
    rows, cols = torch.meshgrid(torch.arange(tokens), torch.arange(tokens), indexing="ij")
    coords = torch.stack([rows, cols], -1).reshape(-1, 2).float()
    good = total = 0
    for epoch in range(samples):
        rng = np.random.default_rng([0, epoch, 0])
        views = [int(v) for v in rng.choice(len(seq.images), size=exact.num_views, replace=False)]
        a, b = (token_correspondences(d.sample(0, views, 1)["pointmaps"][None], (tokens, tokens))
                for d in (exact, stereo))
        close = (coords[a.index[0]] - coords[b.index[0]]).norm(dim=-1) <= 1.5
        good += int((b.valid[0] & a.valid[0] & close).sum())
        total += int(b.valid[0].sum())
    return good / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtu", type=Path, default=Path("/work/shared/data/dtu_scan24"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_pointmaps"))
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--neighbours", type=int, default=1,
                        help="stereo neighbours per frame (data.pointmap_neighbours)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    copy = distorted_copy(args.dtu, args.work / "dtu_scan24_distorted")
    print(f"made-up lens k1 {K1}, k2 {K2}: undistorted copy vs DTU image in the same intrinsics, mean |difference| "
          f"{undistortion_error(args.dtu, copy):.2f} grey levels (0-255); pinhole K of the copy "
          f"{[round(x, 1) for x in pinhole_intrinsics(nerfstudio.read_sequences(copy)[0].lenses[0], 384, 384)]}")
    print("\n| capture | pointmaps | frames | stereo time (s) | s / frame | valid pixels | "
          + " | ".join(f"pass share {lo:g}-{hi:g} deg" for lo, hi in zip(ANGLE_BINS, ANGLE_BINS[1:]))
          + " | stereo matches agreeing with exact depth |")
    print("|---|---|---|---|---|---|" + "---|" * len(ANGLE_BINS))
    rows = [("DTU scan24", dtu.read_sequences(args.dtu)[0]),
            ("nerfstudio copy, k1/k2", nerfstudio.read_sequences(copy)[0])]
    rows += [(f"procedural {kind} {i} (128 px)", procedural_capture(args.work, kind, i)) for kind in ("object", "room")
             for i in range(2)]
    for name, seq in rows:
        exact = None
        if seq.depths is not None:
            exact = SequenceDataset([seq], num_views=4, resolution=args.resolution)
            _row(name, "exact depth", exact, None, pass_shares(exact, args.tokens, args.samples))
            seq = Sequence(seq.name, seq.images, seq.K, seq.c2w)
        source = StereoPointmaps(args.work / "cache", args.max_side, args.neighbours)
        data = SequenceDataset([seq], num_views=4, resolution=args.resolution, pointmaps=source)
        start = time.perf_counter()
        source.prepare(data.sequences, progress=False)
        summary = json.loads((source.folder(seq) / "summary.json").read_text())
        seconds = summary["seconds"] if time.perf_counter() - start < 1 else time.perf_counter() - start
        _row(name, "stereo", data, (seconds, summary["valid_share"]), pass_shares(data, args.tokens, args.samples),
             None if exact is None else agreement(exact, data, args.tokens, args.samples))
    print(f"\nStereo at {args.max_side} px (longer side), {args.neighbours} neighbour(s); pass share: tokens of view "
          f"i ({args.tokens}x{args.tokens} at {args.resolution} px) whose nearest 3D neighbour in view j maps back "
          f"within 1.5 tokens, over ordered pairs of {args.samples} 4-view samples, binned by the angle between the optical axes.")


if __name__ == "__main__":
    main()
