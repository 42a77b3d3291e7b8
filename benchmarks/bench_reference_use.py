"""Does a model read its references? Held-out denoising loss with the scene's own reference views against the
references of another scene (cameras and noisy targets unchanged), split into low and high noise levels.

A model that ignores its references scores the same both ways; the rise is what it takes from them. Evaluation set:
the benchmark's held-out procedural scenes (half objects, half rooms), fixed noise.

    python benchmarks/bench_reference_use.py assets/model runs/demo-cpu/snapshots/step-0002000
"""

from __future__ import annotations

import argparse
import time

import torch

from cameo.eval.nvs import LOSS_TIMESTEPS, heldout_denoising_loss, mixed_procedural_scenes
from cameo.eval.report import markdown_table
from cameo.model_folder import CameoModel

BANDS = {"low noise (t < 500)": [t for t in LOSS_TIMESTEPS if t < 500],
         "high noise (t >= 500)": [t for t in LOSS_TIMESTEPS if t >= 500]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="exported model folders")
    parser.add_argument("--scenes", type=int, default=8, help="held-out scenes (half objects, half rooms)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for folder in args.models:
        start = time.perf_counter()
        loaded = CameoModel.from_pretrained(folder, "cpu")
        scenes = mixed_procedural_scenes(args.scenes, loaded.image_size)
        for band, timesteps in BANDS.items():
            own, other = (heldout_denoising_loss(loaded.unet, loaded.codec, scenes, loaded.schedule,
                                                 timesteps=timesteps, swap_references=swap) for swap in (False, True))
            for key in own:
                rows.append({"model": folder, "noise": band, "setting": key.split()[0], "own references": own[key],
                             "other scene's references": other[key], "rise": other[key] / own[key] - 1})
        print(f"{folder}: {time.perf_counter() - start:.0f} s", flush=True)
    print(markdown_table(rows, 3))


if __name__ == "__main__":
    main()
