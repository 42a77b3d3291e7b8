"""The training engine: accelerate (CPU, one or many GPUs, bf16), gradient accumulation, NaN-skipping,
atomic checkpoints with exact resume, a tqdm bar and a metrics.jsonl log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMScheduler
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cameo.atomic import write_text_atomic
from cameo.diffusion import camera_conditioning, denoising_loss, noise_targets
from cameo.model_folder import DEPTH_FOLDER, ModelConfig, has_depth_net, write_model_folder
from cameo.priors import measured_pixels
from cameo.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    register_model_io,
    save_checkpoint,
)
from cameo.train.components import Components
from cameo.train.config import TrainConfig, dump_config
from cameo.train.ema import EMA_WEIGHTS, averaged_weights, make_ema, save_ema
from cameo.train.batch_order import StreamBatchSampler
from cameo.train.priors import training_priors
from cameo.train.step import camera_dropout, step_generator

METRICS = "metrics.jsonl"
EXPORT = "model"

# validate(cfg, unet (unwrapped, eval mode), components, noise scheduler) -> metrics such as {"val_psnr": ...}
Validator = Callable[[TrainConfig, torch.nn.Module, Components, DDPMScheduler], dict[str, float]]


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after`` (tests): the run stops abruptly after a given optimiser step."""


def make_noise_scheduler(cfg: TrainConfig) -> DDPMScheduler:
    """The DDPM training schedule described by ``cfg.diffusion`` (saved with every checkpoint)."""
    d = cfg.diffusion
    return DDPMScheduler(
        num_train_timesteps=d.num_train_timesteps,
        beta_schedule=d.beta_schedule,
        beta_start=d.beta_start,
        beta_end=d.beta_end,
        prediction_type=d.prediction_type,
        rescale_betas_zero_snr=d.rescale_betas_zero_snr,
        timestep_spacing=d.timestep_spacing,
        clip_sample=False,
    )


def lr_factor(step: int, warmup: int, max_steps: int, decay: int) -> float:
    """Learning-rate multiplier at optimiser step ``step``: linear warm-up from 0 over ``warmup`` steps, 1, then
    (``decay`` > 0) linear decay to 0 over the last ``decay`` steps before ``max_steps``."""
    factor = step / warmup if step < warmup else 1.0
    if decay > 0:
        factor *= min(1.0, max(max_steps - step, 0) / decay)
    return factor


@dataclass
class _Run:
    """What every step of one ``train`` call works with: the prepared model, optimiser and schedules."""

    cfg: TrainConfig
    run_dir: Path
    accelerator: Accelerator
    parts: Components
    noise_scheduler: DDPMScheduler
    use_cameo: bool
    modules: list[torch.nn.Module]
    params: list[torch.nn.Parameter]
    unet: torch.nn.Module
    cameo: Any
    optimizer: Any  # accelerate's wrappers of the AdamW optimiser and the LambdaLR schedule
    lr_schedule: Any
    previous: Path | None
    plain_unet: torch.nn.Module
    """The UNet without accelerate's wrappers (what the moving average and the exports see)."""
    ema: Any = None


class _LossWindow:
    """Loss terms of the micro-steps since the last log record, and when that window started."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.values: dict[str, list[float]] = {"loss": [], "loss_denoise": [], "loss_cameo": []}
        self.start = time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for key, value in terms.items():
            self.values[key].append(float(value.detach()))

    def means(self) -> dict[str, float]:
        return {k: sum(v) / len(v) for k, v in self.values.items() if v}

    def record(self, run: _Run, nan_skips: int) -> dict[str, Any]:
        """The log record of the window (means over processes, learning rate, speed); starts a new window."""
        record: dict[str, Any] = _reduce_means(run.accelerator, self.means())
        elapsed = time.perf_counter() - self.start
        record |= {"lr": run.lr_schedule.get_last_lr()[0], "nan_skips": nan_skips,
                   "steps_per_s": len(self.values["loss"]) / run.cfg.optim.grad_accum / max(elapsed, 1e-9)}
        self._reset()
        return record


def train(
    cfg: TrainConfig,
    build: Callable[[TrainConfig, Accelerator], Components],
    resume: bool = False,
    validate: Validator | None = None,
    stop_after: int | None = None,
) -> Path:
    """Train ``cfg`` and return the exported model folder ``<output_dir>/model``.

    ``build`` creates the model and data (after seeding, so initial weights are deterministic). With ``resume``
    training continues from the newest complete checkpoint exactly as if it had never stopped.
    """
    run = _start(cfg, build, resume)
    state = _initial_state(run)
    run.ema = make_ema(cfg, run.plain_unet, run.previous, state["step"])
    if run.previous is not None and run.accelerator.is_main_process and _snapshot_due(cfg, state["step"]):
        missed = snapshot_dir(run.run_dir, state["step"])
        if not missed.exists():  # killed between the checkpoint and its snapshot export
            export_model(run.previous, missed, cfg, run.parts.codec)
    rank, world = run.accelerator.process_index, run.accelerator.num_processes
    sampler = StreamBatchSampler(len(run.parts.train_set), cfg.optim.batch_size, cfg.seed, rank, world,
                                 start=state["micro_step"])
    batches = iter(DataLoader(run.parts.train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers))
    bar = tqdm(total=cfg.optim.max_steps, initial=state["step"], desc=cfg.name, dynamic_ncols=True,
               disable=not run.accelerator.is_main_process)
    window = _LossWindow()
    while state["step"] < cfg.optim.max_steps:
        step_start = time.perf_counter()
        if not _optimizer_step(run, state, batches, window):
            state["nan_skips"] += 1
        state["step"] += 1
        # wall time of the optimiser steps over all sessions of the run (resumes add up; validation excluded)
        state["train_seconds"] = state.get("train_seconds", 0.0) + time.perf_counter() - step_start
        bar.update(1)
        bar.set_postfix({k.replace("loss_", ""): f"{v:.4f}" for k, v in window.means().items()}
                        | {"nan": state["nan_skips"]})
        _after_step(run, state, window, validate)
        if stop_after is not None and state["step"] >= stop_after and state["step"] != cfg.optim.max_steps:
            bar.close()
            raise TrainingInterrupted(f"stopped after step {state['step']}")
    bar.close()
    return _finish(run, state)


def _start(cfg: TrainConfig, build: Callable[[TrainConfig, Accelerator], Components], resume: bool) -> _Run:
    """The accelerator, the run's components (built after seeding), the optimiser and the learning-rate schedule,
    prepared by accelerate; refuses a run folder with checkpoints unless ``resume``."""
    run_dir = Path(cfg.output_dir)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.optim.grad_accum,
        step_scheduler_with_optimizer=False,
        # without CUDA, accelerate only joins the processes of a torchrun/accelerate launch when told to use CPU
        cpu=not torch.cuda.is_available(),
    )
    previous = latest_checkpoint(run_dir)
    if previous is not None and not resume:
        raise FileExistsError(f"{run_dir} already holds checkpoints ({previous.name}); pass --resume or a new output_dir")
    set_seed(cfg.seed)
    parts = build(cfg, accelerator)
    noise_scheduler = make_noise_scheduler(cfg)
    use_cameo = cfg.cameo.enabled and parts.cameo is not None
    own_params = use_cameo and isinstance(parts.cameo, torch.nn.Module) and any(True for _ in parts.cameo.parameters())
    modules = [parts.unet] + ([parts.cameo] if own_params else [])
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
    )
    # stepped once per optimiser step (the Accelerator has step_scheduler_with_optimizer=False): count = step
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda count: lr_factor(
        count, cfg.optim.warmup_steps, cfg.optim.max_steps, cfg.optim.decay_steps))
    prepared = accelerator.prepare(*modules, optimizer, lr_schedule)
    register_model_io(accelerator, ["unet", "cameo_head"][: len(modules)])
    return _Run(cfg, run_dir, accelerator, parts, noise_scheduler, use_cameo, modules, params, unet=prepared[0],
                cameo=prepared[1] if own_params else parts.cameo, optimizer=prepared[-2], lr_schedule=prepared[-1],
                previous=previous, plain_unet=accelerator.unwrap_model(prepared[0]))


def _initial_state(run: _Run) -> dict[str, Any]:
    """The trainer state: restored (with the weights, optimiser and RNG) from the previous checkpoint, or fresh
    (the run folder and its config written)."""
    state: dict[str, Any] = {"step": 0, "micro_step": 0, "nan_skips": 0, "metrics": {}, "train_seconds": 0.0}
    if run.previous is not None:
        state = load_checkpoint(run.accelerator, run.previous)
        if run.accelerator.is_main_process:
            _truncate_metrics(run.run_dir / METRICS, state["step"])
    elif run.accelerator.is_main_process:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run.run_dir / "config.yaml", dump_config(run.cfg))
    return state


def _optimizer_step(run: _Run, state: dict[str, Any], batches: Iterator[dict[str, Any]], window: _LossWindow) -> bool:
    """``grad_accum`` micro-steps and one optimiser step; False when a non-finite loss on any process skipped it."""
    cfg, accelerator = run.cfg, run.accelerator
    step_ok = True
    for _ in range(cfg.optim.grad_accum):
        batch = next(batches)
        gen = step_generator(cfg.seed, state["micro_step"], accelerator.process_index)
        with accelerator.accumulate(*run.modules):
            terms = _losses(cfg, run.parts, run.unet, run.cameo, batch, gen, run.noise_scheduler, accelerator,
                            run.use_cameo)
            loss = terms["loss"]
            finite = accelerator.reduce(torch.isfinite(loss.detach()).float().reshape(1), "sum")
            micro_ok = bool(finite.item() == accelerator.num_processes)
            step_ok &= micro_ok
            if micro_ok:
                accelerator.backward(loss)
                window.add(terms)
            if accelerator.sync_gradients:
                if step_ok:
                    if cfg.optim.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(run.params, cfg.optim.max_grad_norm)
                    run.optimizer.step()
                    run.lr_schedule.step()
                    if run.ema is not None:
                        run.ema.step(run.plain_unet.parameters())
                run.optimizer.zero_grad(set_to_none=True)
        state["micro_step"] += 1
    return step_ok


def _after_step(run: _Run, state: dict[str, Any], window: _LossWindow, validate: Validator | None) -> None:
    """The log record (every ``log_every`` steps), validation, checkpoint and snapshot export due at this step."""
    cfg, step = run.cfg, state["step"]
    last = step == cfg.optim.max_steps
    record = window.record(run, state["nan_skips"]) if step % cfg.log_every == 0 or last else {}
    if validate is not None and cfg.val_every and (step % cfg.val_every == 0 or last):
        with averaged_weights(run.ema, run.plain_unet):
            record |= _run_validation(cfg, run.accelerator, run.unet, run.parts, run.noise_scheduler, validate)
    if record:
        record = {"step": step, **record}
        state["metrics"] = record
        if run.accelerator.is_main_process:
            with open(run.run_dir / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
    snapshot_due = _snapshot_due(cfg, step)
    if step % cfg.checkpoint_every == 0 or last or snapshot_due:
        _save(run, state)
    if snapshot_due and run.accelerator.is_main_process:
        export_model(latest_checkpoint(run.run_dir), snapshot_dir(run.run_dir, step), cfg, run.parts.codec)


def _save(run: _Run, state: dict[str, Any]) -> None:
    """An atomic checkpoint of the run at ``state["step"]``, with the noise schedule and the moving average."""

    def extra(folder: Path) -> None:
        run.noise_scheduler.save_pretrained(folder / "scheduler")
        if run.ema is not None:
            save_ema(run.ema, run.plain_unet, folder)

    save_checkpoint(run.accelerator, run.run_dir, state["step"], state, run.cfg.keep_checkpoints, extra=extra)


def _finish(run: _Run, state: dict[str, Any]) -> Path:
    """Export the newest checkpoint to ``<output_dir>/model`` (main process) and end the accelerate session."""
    if run.previous is None and run.cfg.optim.max_steps == 0:
        _save(run, state)  # nothing trained: the export still needs a checkpoint to copy
    export = run.run_dir / EXPORT
    if run.accelerator.is_main_process:
        export_model(latest_checkpoint(run.run_dir), export, run.cfg, run.parts.codec)
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()
    return export


def _snapshot_due(cfg: TrainConfig, step: int) -> bool:
    return bool(cfg.snapshot_every) and step > 0 and step % cfg.snapshot_every == 0


def snapshot_dir(run_dir: Path, step: int) -> Path:
    """The exported model folder of ``step`` written when ``snapshot_every`` divides it."""
    return Path(run_dir) / "snapshots" / f"step-{step:07d}"


def _losses(
    cfg: TrainConfig,
    parts: Components,
    unet: torch.nn.Module,
    cameo: Any,
    batch: dict[str, Any],
    gen: torch.Generator,
    scheduler: DDPMScheduler,
    accelerator: Accelerator,
    use_cameo: bool,
) -> dict[str, torch.Tensor]:
    """Total, denoising and CAMEO losses of one micro-batch."""
    device = accelerator.device
    images = batch["images"].to(device)
    b, f, _, height, width = images.shape
    ref_mask = batch["ref_mask"].bool()  # references first, 1-3 of them, drawn by the dataset
    drop = camera_dropout(b, cfg.cfg_drop_prob, cfg.cfg_drop_mode, gen)
    plucker = camera_conditioning(batch["c2w"].to(device), batch["K"].to(device), height, width)
    clean = batch["latents"].to(device) if "latents" in batch else _to_model_space(parts, images)
    noised = noise_targets(clean, ref_mask, scheduler, gen)
    uses_prior = getattr(accelerator.unwrap_model(unet), "uses_prior", False)
    extra = {}
    if uses_prior:
        extra["prior"] = training_priors(batch, ref_mask, cfg.prior, gen, parts.depth_net).to(device)
    ref_mask, drop = ref_mask.to(device), drop.to(device)
    with accelerator.autocast():
        prediction, attention = parts.forward(unet, noised.noisy, noised.timesteps, plucker, ref_mask, drop, use_cameo,
                                              **extra)
    loss_denoise = denoising_loss(prediction, noised.target, ref_mask,
                                  _pixel_weights(extra.get("prior"), cfg.prior.measured_weight, prediction))
    terms = {"loss_denoise": loss_denoise}
    loss = loss_denoise
    if use_cameo:
        if attention is None:
            raise RuntimeError("CAMEO is enabled but the model returned no attention of the supervised layer")
        with torch.autocast(device_type=device.type, enabled=False):  # the CAMEO loss is computed in fp32
            loss_cameo = cameo(attention, batch["pointmaps"].to(device).float())
        terms["loss_cameo"] = loss_cameo
        loss = loss + cfg.cameo.weight * loss_cameo
    terms["loss"] = loss
    return terms


def _pixel_weights(prior: torch.Tensor | None, measured_weight: float, prediction: torch.Tensor
                   ) -> torch.Tensor | None:
    """``[B,F,1,h,w]`` loss weights at the model space's size: ``measured_weight`` where the prior ``[B,F,4,H,W]``
    is measured (mask 1), 1 elsewhere, averaged over each position's pixels; None when every pixel counts alike."""
    if prior is None or measured_weight == 1.0:
        return None
    b, f = prior.shape[:2]
    measured = measured_pixels(prior).float().flatten(0, 1)  # what the sampler's anchor holds
    weights = F.adaptive_avg_pool2d(1.0 + (measured_weight - 1.0) * measured, prediction.shape[-2:])
    return weights.unflatten(0, (b, f))


def _to_model_space(parts: Components, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the model's clean sample: [-1, 1] pixels, or frozen-codec latents."""
    if parts.codec is None:
        return images * 2.0 - 1.0
    with torch.no_grad():
        return parts.codec.encode(images)


def _reduce_means(accelerator: Accelerator, means: dict[str, float]) -> dict[str, float]:
    """Average the per-process window means over processes."""
    out = {}
    for key, value in sorted(means.items()):
        tensor = torch.tensor([value], device=accelerator.device)
        out[key] = float(accelerator.reduce(tensor, "mean").item())
    return out


def _run_validation(
    cfg: TrainConfig,
    accelerator: Accelerator,
    unet: torch.nn.Module,
    parts: Components,
    scheduler: DDPMScheduler,
    validate: Validator,
) -> dict[str, float]:
    """Run ``validate`` on the main process without disturbing training RNG or train mode."""
    result: dict[str, float] = {}
    if accelerator.is_main_process and parts.val_set is not None:
        model = accelerator.unwrap_model(unet)
        model.eval()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(cfg.seed)
            result = validate(cfg, model, parts, scheduler)
        model.train()
    accelerator.wait_for_everyone()
    return result


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric records written after the checkpoint being resumed (they will be written again)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def export_model(checkpoint: Path, export: Path, cfg: TrainConfig, codec: Any, half: bool = False) -> None:
    """Export a checkpoint through the model folder's owner (``cameo.model_folder``): its UNet (the moving average
    when the run keeps one), scheduler and CAMEO head, ``codec`` (the run's frozen codec: a latent model's ``vae/``
    goes with it, so the folder is self-contained), the run's one-photo depth network when ``cameo-train depth``
    made one, the sizes of ``cfg``, its config and a model card; ``half`` stores the weights as float16."""
    averaged = checkpoint / EMA_WEIGHTS
    unet = averaged if averaged.is_dir() else checkpoint / "unet"
    unet_config = json.loads((unet / "config.json").read_text())
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    extra: dict[str, str | Path] = {"train_config.yaml": dump_config(cfg),
                                    "model_card.md": model_card(cfg, state, averaged.is_dir())}
    if (checkpoint / "cameo_head.safetensors").is_file():
        extra["cameo_head.safetensors"] = checkpoint / "cameo_head.safetensors"
    config = ModelConfig.for_unet(unet_config, cfg.data.resolution, cfg.data.num_views)
    run = Path(cfg.output_dir)  # its ``depth/``: ``cameo-train depth`` of the same run, when it was trained
    write_model_folder(export, unet, checkpoint / "scheduler", codec, config, extra, half=half, overwrite=True,
                       depth_net=run / DEPTH_FOLDER if has_depth_net(run) else None)


def export_run(cfg: TrainConfig, out: str | Path | None = None, half: bool = False) -> Path:
    """Export the newest complete checkpoint of ``cfg``'s run (e.g. to ship a model while training goes on).

    ``half`` stores the weights as float16 safetensors; loaders cast them back to float32.
    """
    from cameo.train.codec_setup import load_frozen_codec

    run_dir = Path(cfg.output_dir)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir}: no complete checkpoint to export")
    export = Path(out) if out else run_dir / EXPORT
    export_model(checkpoint, export, cfg, load_frozen_codec(cfg, torch.device("cpu")), half=half)
    return export


def model_card(cfg: TrainConfig, state: dict[str, Any], averaged: bool = False) -> str:
    """A short description of how the exported model was trained (config, steps, last metrics)."""
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in state.get("metrics", {}).items() if isinstance(v, float))
    cameo = (f"CAMEO on (layer {cfg.cameo.layer}, lambda {cfg.cameo.weight}, tau {cfg.cameo.tau}, "
             f"{cfg.cameo.head} head, {cfg.cameo.loss} loss)" if cfg.cameo.enabled else "CAMEO off (baseline)")
    ema = (f"; weights: moving average (decay {cfg.optim.ema_decay}, from step {cfg.optim.ema_after_step})"
           if averaged else "")
    return (f"# {cfg.name}\n\nMulti-view diffusion model (preset `{cfg.model.preset}`) trained by `cameo-train "
            f"--config {cfg.name}` for {state['step']} steps (seed {cfg.seed}, batch {cfg.optim.batch_size} x "
            f"{cfg.optim.grad_accum}, lr {cfg.optim.lr}), {cameo}{ema}; {state.get('train_seconds', 0.0) / 3600:.2f} h of "
            f"training steps.\n\nData: {cfg.data.source} at "
            f"`{cfg.data.path}`, {cfg.data.resolution}x{cfg.data.resolution}, {cfg.data.num_views} views with "
            f"{cfg.data.min_refs}-{cfg.data.max_refs} references.\n\nLast logged metrics: {metrics or 'none'}; "
            f"NaN-skipped steps: {state['nan_skips']}.\nFull configuration: `train_config.yaml`.\n")
