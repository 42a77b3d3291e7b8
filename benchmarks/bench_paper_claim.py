"""The paper's main claim at CPU scale: CAMEO (layer 10, lambda 0.02, tau 1.5, MLP head) reaches the baseline's
quality in fewer training steps (paper: 2x fewer, Table 1 / Fig. 5c).

Arms: ``bench-cameo`` (CAMEO; the bundled model until the pixel-space ``demo-cpu`` replaced it) and
``bench-baseline`` (the same run with the CAMEO loss off: same data, seed, model, schedule and autoencoder). Both
runs export a model snapshot every 500 steps; this script scores every snapshot of both arms on held-out procedural
scenes (half objects, half rooms, never in the training data): PSNR / SSIM / LPIPS-VGG of generated views in 1-to-3
and 2-to-2, the held-out denoising loss (the training objective at fixed noise levels and noise: the low-variance
curve) and the correspondence precision of the CAMEO layer (Probe3D protocol, plus the argmax of the layer's
attention and of the CAMEO head). Ablation arms (``ABLATIONS``: the CAMEO head replaced by a plain mean over heads)
are scored where their snapshots exist. It writes ``summary.md`` (tables + step ratio), ``results.json`` and PNG
curves into ``--out``; per-snapshot scores are cached there, so a rerun only scores new snapshots.

    # train both arms to 2500 steps (resumable: rerun to continue), one core each, then score them
    python benchmarks/bench_paper_claim.py --train --max-steps 2500
    # score whatever snapshots exist
    python benchmarks/bench_paper_claim.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from cameo.atomic import write_json_atomic, write_text_atomic
from cameo.eval.curves import step_ratio
from cameo.eval.metrics import ImageMetrics
from cameo.eval.nvs import SETTINGS, evaluate_nvs, heldout_denoising_loss, mixed_procedural_scenes, probe_scenes
from cameo.eval.report import line_chart, markdown_table, picture_grid, summarize
from cameo.model_folder import CameoModel
from cameo.train.config import load_config

ARMS = {"CAMEO": "bench-cameo", "baseline": "bench-baseline"}
ABLATIONS = {"CAMEO mean head": "bench-cameo-mean-head"}
"""Extra arms, scored and plotted where their snapshots exist (trained with ``--train --ablations``)."""
EXTRA_KEYS = {f"{setting} loss" for setting in SETTINGS} | {"attention precision"}
"""Scores added after the first results were cached: computed for cached snapshots that lack them."""


def train_arms(configs: list[str], max_steps: int, threads: int) -> None:
    """Train the shared autoencoder, then the arms side by side (``threads`` each), resuming where they stopped."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    cli = [sys.executable, "-m", "cameo.train"]
    if not (Path(load_config(ARMS["CAMEO"]).output_dir) / "autoencoder" / "config.json").is_file():
        subprocess.run(cli + ["autoencoder", "--config", ARMS["CAMEO"]], check=True)
    runs = [subprocess.Popen(cli + ["--config", config, "--resume", "--optim.max-steps", str(max_steps)], env=env,
                             stdout=subprocess.DEVNULL, stderr=open(f"{load_config(config).output_dir}.log", "a"))
            for config in configs]
    if any(run.wait() for run in runs):
        raise SystemExit("a training run failed; see runs/<name>.log")


def snapshots(config: str) -> dict[int, Path]:
    """Step -> exported snapshot folder of a run."""
    root = Path(load_config(config).output_dir) / "snapshots"
    return {int(p.name.split("-")[1]): p for p in sorted(root.glob("step-*")) if (p / "model_card.md").is_file()}


def cache_path(out: Path, config: str, step: int, args) -> Path:
    """Scores of one snapshot under one evaluation setting (its 2-to-2 picture: same name, .png)."""
    return out / "cache" / f"{config}-step-{step:07d}-s{args.scenes}-d{args.ddim_steps}-cfg{args.cfg:g}-t{args.precision_threshold:g}.json"


def score_snapshot(folder: Path, scenes: list, metrics: ImageMetrics, ddim_steps: int, cfg: float,
                   threshold_rel: float):
    """All scores of one snapshot (NVS metrics per setting + :func:`score_internals`) and a picture of its 2-to-2
    generations (references | ground truth | generated, one row per scene)."""
    loaded = CameoModel.from_pretrained(folder, "cpu")
    nvs = evaluate_nvs(loaded.unet, loaded.codec, scenes, metrics, SETTINGS, ddim_steps, cfg, seed=0,
                       schedule=loaded.schedule)
    result: dict = {}
    for row in summarize(nvs.rows, ("setting",), ("psnr", "ssim", "lpips")):
        result |= {f"{row['setting']} {k}": row[k] for k in ("psnr", "ssim", "lpips")}
    return result | score_internals(loaded, scenes, threshold_rel), picture_grid(nvs.examples["2-to-2"])


def score_internals(loaded: CameoModel, scenes: list, threshold_rel: float) -> dict[str, float]:
    """Held-out denoising loss per setting, and the CAMEO layer's correspondence precision read three ways (cameras
    dropped, as in the paper): q/k descriptors (Probe3D), the head-averaged attention's argmax, and the argmax of
    the CAMEO head's logits (what the loss supervises; absent without CAMEO)."""
    result = heldout_denoising_loss(loaded.unet, loaded.codec, scenes, loaded.schedule)
    layer = loaded.unet.resolve_layer(int(loaded.train_config["cameo"]["layer"]))
    rows, _ = probe_scenes(loaded.unet, loaded.codec, scenes, [layer], None, threshold_rel, grid=64)
    for key, name in (("precision", "precision"), ("attention_precision", "attention precision"),
                      ("head_precision", "head precision")):
        if key in rows[0]:
            result[name] = sum(r[key] for r in rows) / len(rows)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train (or resume) both arms to --max-steps first")
    parser.add_argument("--max-steps", type=int, default=2500)
    parser.add_argument("--ablations", action="store_true", help=f"with --train: also train {', '.join(ABLATIONS)}")
    parser.add_argument("--train-threads", type=int, default=1, help="torch threads per training run")
    parser.add_argument("--scenes", type=int, default=8, help="held-out scenes (half objects, half rooms)")
    parser.add_argument("--ddim-steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=2.0)
    parser.add_argument("--precision-threshold", type=float, default=0.075,
                        help="correct match: 3D distance below this fraction of the median depth (default: about one "
                             "16x16-grid token, 4 px, of a 64x64 view at the median depth)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for scoring")
    parser.add_argument("--out", default="benchmarks/results/paper_claim")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.train:
        train_arms(list(ARMS.values()) + (list(ABLATIONS.values()) if args.ablations else []), args.max_steps,
                   args.train_threads)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    size = load_config(ARMS["CAMEO"]).data.resolution
    scenes = mixed_procedural_scenes(args.scenes, size)
    metrics = ImageMetrics()
    results: dict[str, dict[int, dict]] = {}
    scored = 0
    for arm, config in (ARMS | ABLATIONS).items():
        results[arm] = {}
        for step, folder in snapshots(config).items():
            cache = cache_path(out, config, step, args)
            if not cache.is_file():
                t = time.perf_counter()
                scores, picture = score_snapshot(folder, scenes, metrics, args.ddim_steps, args.cfg,
                                                 args.precision_threshold)
                picture.save(cache.with_suffix(".png"))
                write_json_atomic(cache, scores)
                print(f"scored {arm} step {step} in {time.perf_counter() - t:.0f} s", flush=True)
                scored += 1
            scores = json.loads(cache.read_text())
            if EXTRA_KEYS - scores.keys():  # cached before these columns existed: add them
                scores |= score_internals(CameoModel.from_pretrained(folder, "cpu"), scenes, args.precision_threshold)
                write_json_atomic(cache, scores)
            results[arm][step] = scores
    common = sorted(set(results["CAMEO"]) & set(results["baseline"]))
    if not common:
        raise SystemExit("no snapshot step exists in both arms yet; train them first (--train)")
    run = f"this run scored {scored} new snapshots in {(time.perf_counter() - start) / 60:.1f} min (the rest cached)"
    write_report(out, results, common, args, run)


def write_report(out: Path, results: dict[str, dict[int, dict]], steps: list[int], args, run: str) -> None:
    """summary.md, results.json, the curves and example pictures. Tables and curves show every scored snapshot; the
    step ratio uses ``steps``, those both main arms reached."""
    keys = [f"{s} {m}" for s in SETTINGS for m in ("psnr", "ssim", "lpips", "loss")]
    keys += ["precision", "attention precision", "head precision"]
    every = sorted({step for scores in results.values() for step in scores})
    rows = [{"arm": arm, "step": step, **{k: results[arm][step].get(k, "-") for k in keys}}
            for step in every for arm in results if step in results[arm]]

    def curve(arm: str, key: str, sign: float = 1.0, only: list[int] = every) -> list[tuple[int, float]]:
        return [(s, sign * results[arm][s][key]) for s in only if s in results[arm] and key in results[arm][s]]

    ratios = []
    for setting in SETTINGS:
        for measure, sign in (("PSNR", 1.0), ("loss", -1.0)):  # step_ratio wants higher = better
            key = f"{setting} {measure.lower()}"
            needed, ratio = step_ratio(curve("baseline", key, sign, steps), curve("CAMEO", key, sign, steps))
            ratios.append({"setting": setting, "measure": measure, "baseline final step": steps[-1],
                           "baseline final value": f"{results['baseline'][steps[-1]][key]:.{2 if sign > 0 else 3}f}",
                           "CAMEO steps to reach it": "not reached" if math.isnan(needed) else round(needed),
                           "step ratio": "-" if math.isnan(ratio) else f"{ratio:.2f}x"})
        line_chart({arm: curve(arm, f"{setting} psnr") for arm in results},
                   f"{setting} PSNR of generated views (held-out)", "training step", "PSNR dB").save(
            out / f"psnr_{setting}.png")
    line_chart({arm: curve(arm, "2-to-2 loss") for arm in results}, "held-out 2-to-2 denoising loss (fixed noise)",
               "training step", "loss").save(out / "loss.png")
    series = {f"{arm}: q/k": curve(arm, "precision") for arm in results} | {"CAMEO: head": curve("CAMEO", "head precision")}
    line_chart(series,
               "layer-10 correspondence precision", "training step", "precision").save(out / "precision.png")
    last = {arm: max(results[arm]) for arm in ARMS}
    for arm, config in ARMS.items():  # 2-to-2 generations of each main arm's last snapshot
        shutil.copyfile(cache_path(out, config, last[arm], args).with_suffix(".png"), out / f"examples_{arm}.png")
    header = (f"# CAMEO vs baseline (demo-cpu preset scale)\n\n{args.scenes} held-out procedural scenes (half objects, half "
              f"rooms), {args.ddim_steps} DDIM steps, CFG {args.cfg}; PSNR/SSIM/LPIPS-VGG of the generated target "
              f"views; loss: the training objective on the held-out targets at 10 fixed noise levels with fixed "
              f"noise. Layer-10 correspondence precision (cameras dropped, threshold {args.precision_threshold:.1%} of "
              f"the median depth): precision = q/k descriptors, Probe3D protocol; attention precision = argmax of the "
              f"head-averaged attention; head precision = argmax of the CAMEO head's logits (chance is about 0.01).\n"
              f"Example pictures (2-to-2; references | ground truth | generated): "
              f"{', '.join(f'examples_{arm}.png at step {step}' for arm, step in last.items())}.\n"
              f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__}; {run}.\n\n")
    text = (header + markdown_table(rows, 3) + "\n## Steps to the baseline's final PSNR and loss\n\n"
            + markdown_table(ratios, 2))
    write_text_atomic(out / "summary.md", text)
    write_json_atomic(out / "results.json", {"rows": rows, "step_ratio": ratios})
    print(text)


if __name__ == "__main__":
    main()
