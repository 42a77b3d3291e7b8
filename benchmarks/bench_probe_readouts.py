"""Where does CAMEO's correspondence live? Layer-10/11 precision of each benchmark arm read three ways, with the
camera conditioning dropped (the paper's probe protocol) and kept (as in generation).

Readouts (cameo.eval.nvs.probe_scenes): q/k descriptors matched by cosine (Probe3D, Lowe-ranked top-1000), the
argmax of the head-averaged attention (what the layer attends to), its argmin (high when the logits are
anti-aligned with correspondence), and the argmax of the CAMEO head's logits (what the loss supervises; only on the
CAMEO layer of arms trained with it). Held-out scenes: half objects, half rooms.

    python benchmarks/bench_probe_readouts.py --step 2500
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch

from cameo.atomic import write_text_atomic
from cameo.eval.nvs import mixed_procedural_scenes, probe_scenes
from cameo.eval.report import markdown_table, summarize
from cameo.model_folder import CameoModel
from cameo.train.config import load_config

ARMS = {"CAMEO": "bench-cameo", "baseline": "bench-baseline", "CAMEO mean head": "bench-cameo-mean-head"}
READOUTS = {"precision": "q/k descriptors", "attention_precision": "attention argmax",
            "inverted_precision": "attention argmin", "head_precision": "CAMEO head argmax"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=2500, help="snapshot step probed in every arm that has it")
    parser.add_argument("--layers", default="10,11", help="SD2.1 layer numbers")
    parser.add_argument("--scenes", type=int, default=8, help="held-out scenes (half objects, half rooms)")
    parser.add_argument("--threshold", type=float, default=0.075, help="fraction of the median depth")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/paper_claim/probe_readouts.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    size = load_config(ARMS["CAMEO"]).data.resolution
    scenes = mixed_procedural_scenes(args.scenes, size)
    rows = []
    for arm, config in ARMS.items():
        folder = Path(load_config(config).output_dir) / "snapshots" / f"step-{args.step:07d}"
        if not (folder / "model_card.md").is_file():
            print(f"{arm}: no snapshot at step {args.step}, skipped")
            continue
        loaded = CameoModel.from_pretrained(folder, "cpu")
        layers = [loaded.unet.resolve_layer(int(n)) for n in args.layers.split(",")]
        for cameras in (False, True):
            found, _ = probe_scenes(loaded.unet, loaded.codec, scenes, layers, None, args.threshold, grid=64,
                                    cameras=cameras)
            for row in summarize(found, ("layer",), tuple(READOUTS)):
                layer = row["layer"].replace(".transformer_blocks.0.attn1", "")
                rows.append({"arm": arm, "layer": layer, "cameras": "on" if cameras else "dropped",
                             **{name: "-" if math.isnan(row[key]) else row[key] for key, name in READOUTS.items()}})
    text = (f"# Correspondence precision by readout at step {args.step}\n\n"
            f"`python benchmarks/bench_probe_readouts.py --step {args.step}`: {args.scenes} held-out scenes (half "
            f"objects, half rooms), 3 view pairs each, correct if the 3D distance is below {args.threshold:.1%} of the "
            f"median depth; a random argmax scores about 0.01. {os.cpu_count()} CPU cores, "
            f"{(time.perf_counter() - start) / 60:.1f} min.\n\n" + markdown_table(rows, 3))
    write_text_atomic(Path(args.out), text)
    print(text)


if __name__ == "__main__":
    main()
