"""Held-out demo scenes (``demo`` split, disjoint from training seeds) as ``scene.json`` inputs plus ground truth.

Per scene folder: ``scene.json`` with 1-2 input frames (``cameo.scene`` format), ``input_*.png``, and ``gt/`` with
every view's PNG, ``depth.npy`` (z-depth, NaN = sky) and ``cameras.json`` (OpenCV K / c2w) for evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cameo.atomic import atomic_dir
from cameo.scene import Scene, make_frames, save_scene

from .procedural import KINDS, generate_scene
from .visualize import write_png_atomic


def make_demo_scenes(
    out: Path | str,
    count: int = 2,
    kinds: tuple[str, ...] = KINDS,
    num_inputs: int = 2,
    views: int = 8,
    resolution: int = 128,
    seed: int = 0,
) -> list[Path]:
    """Render ``count`` demo scenes per kind; returns the written ``scene.json`` paths (each folder atomically)."""
    if num_inputs not in (1, 2):
        raise ValueError(f"num_inputs must be 1 or 2, got {num_inputs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in kinds:
        for index in range(count):
            s = generate_scene(kind, seed, index, views, resolution, split="demo")
            final = out / f"{kind}_{index:02d}"
            with atomic_dir(final, overwrite=True) as tmp:
                (tmp / "gt").mkdir()
                for v in range(views):
                    write_png_atomic(tmp / "gt" / f"view_{v:02d}.png", s.rgb[v])
                np.save(tmp / "gt" / "depth.npy", s.depth)
                (tmp / "gt" / "cameras.json").write_text(json.dumps(
                    {"convention": "opencv", "K": s.K.tolist(), "c2w": s.c2w.tolist(), "scene_id": s.scene_id}))
                # Inputs: the first view and (for 2 inputs) the last one, the widest baseline on the path.
                picks = [0, views - 1][:num_inputs]
                inputs = [write_png_atomic(tmp / f"input_{v:02d}.png", s.rgb[v]) for v in picks]
                frames = make_frames(inputs, s.K[picks], s.c2w[picks], [(resolution, resolution)] * len(picks))
                save_scene(Scene(frames), tmp / "scene.json")
            written.append(final / "scene.json")
    return written
