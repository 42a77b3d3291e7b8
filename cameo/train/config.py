"""Training configuration: nested dataclasses, loaded from a YAML file and overridden from the command line.

One dataclass tree describes a whole run (data, model, diffusion schedule, optimiser, CAMEO loss, autoencoder
stage, logging). Shipped configs live in ``configs/<name>.yaml``; ``load_config`` accepts a name or a path and
rejects unknown or mistyped fields with the file and the dotted field name in the message.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class DataConfig:
    """Where training samples come from and how a sample is formed."""

    source: str = "procedural"
    """``procedural`` or the name of a real-dataset loader module in ``cameo.data.loaders``."""
    path: str = "data/procedural"
    """Dataset root (relative paths are relative to the working directory); procedural kinds in sub-folders."""
    kinds: tuple[str, ...] = ("object", "room")
    """Procedural scene kinds, one ``cameo-data generate --kind`` set each under ``path/<kind>``."""
    scenes: int = 1000
    """Procedural scenes per kind."""
    scene_views: int = 8
    """Rendered views per procedural scene (each sample draws ``num_views`` of them)."""
    scene_seed: int = 0
    """Seed of the procedural scene generator."""
    generate: bool = True
    """Generate missing procedural sets (deterministic in the fields above) before training."""
    generate_workers: int = 1
    """Processes rendering procedural scenes."""
    resolution: int = 64
    """Square image size fed to the model (pixels)."""
    num_views: int = 4
    """Views per sample (F)."""
    min_refs: int = 1
    """Fewest reference (clean, conditioning) views per sample."""
    max_refs: int = 3
    """Most reference views per sample; the rest are targets."""
    val_scenes: int = 2
    """Held-out scenes (the last ones of each kind) used for validation, never trained on."""
    num_workers: int = 0
    """DataLoader worker processes."""
    pointmaps: Literal["auto", "dataset", "stereo", "vggt", "none"] = "auto"
    """Where CAMEO's correspondences (world pointmaps) come from: ``dataset``: the dataset's own depth (procedural,
    CO3D); ``stereo``: the project's two-view stereo between each frame and its best posed neighbours in the same
    sequence, computed once and cached on disk (no weights needed: DTU, RealEstate10K, nerfstudio and COLMAP
    captures); ``vggt``: a local VGGT-1B checkpoint (``vggt_checkpoint``; the paper's choice); ``none``; ``auto``:
    the dataset's depth when it has depth, else stereo. Stereo and VGGT depth are computed once per frame before
    training and cached (``pointmap_cache``). Unused (nothing computed) when CAMEO is off."""
    vggt_checkpoint: str | None = None
    """Local VGGT-1B ``model.pt`` for ``pointmaps: vggt`` (needs the vggt package; never downloaded)."""
    pointmap_cache: str | None = None
    """Folder of cached stereo / VGGT pointmaps (default ``<output_dir>/pointmaps``; share it between runs on the
    same data). Resumable: an interrupted computation continues where it stopped."""
    pointmap_max_side: int = 256
    """Longer image side (pixels) at which stereo / VGGT pointmaps are computed."""
    pointmap_neighbours: int = 1
    """Posed neighbours each frame is computed with (stereo: holes of the best one filled from the next ones; VGGT:
    run on the frame and all of them)."""


@dataclass
class ModelConfig:
    """Which multi-view UNet to build and, for latent models, which codec."""

    preset: str = "demo-cpu"
    """``cameo.model`` configuration name: ``tiny``, ``demo-cpu``, ``demo-cpu-pixel`` or ``sd21``."""
    pretrained: str | None = None
    """Local diffusers Stable Diffusion 2.1 folder: UNet weights and the VAE codec are read from it."""
    codec_path: str | None = None
    """Latent presets without ``pretrained``: folder of the small autoencoder trained by ``cameo-train
    autoencoder`` (default ``<output_dir>/autoencoder``)."""
    init_from: str | None = None
    """Exported model folder (e.g. ``assets/model``) whose UNet weights start this run (a warm start: the
    optimiser and schedule start fresh); its ``vae/`` is the codec unless ``codec_path`` is set."""


@dataclass
class DiffusionConfig:
    """Noise schedule and prediction target; saved with every checkpoint as a diffusers DDPMScheduler config."""

    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    rescale_betas_zero_snr: bool = False
    timestep_spacing: Literal["linspace", "leading", "trailing"] = "leading"


@dataclass
class OptimConfig:
    """AdamW and batching (the paper: lr 2.5e-5, betas 0.9/0.999, weight decay 0.01, batch 6)."""

    lr: float = 2.5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    batch_size: int = 6
    """Samples per process per micro-step."""
    grad_accum: int = 1
    """Micro-steps accumulated into one optimiser step."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping norm; None disables clipping."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps (the paper uses a constant rate: 0)."""
    max_steps: int = 1000
    """Optimiser steps to train."""
    decay_steps: int = 0
    """Linear decay of the learning rate to 0 over the last ``decay_steps`` optimiser steps (0: constant after the
    warm-up, as the paper)."""
    ema_decay: float = 0.0
    """Decay of an exponential moving average of the UNet weights (diffusers ``EMAModel``); 0 disables it. With it,
    validation, snapshots and exports use the averaged weights, which sample cleaner than the last iterate."""
    ema_after_step: int = 0
    """The average copies the weights until this optimiser step and averages from then on (lets a run that
    switched the average on mid-way be reproduced from scratch)."""


@dataclass
class PriorConfig:
    """How training builds the warped-reference prior of models that take one (``prior_injection``)."""

    depth: Literal["gt", "degraded"] = "degraded"
    """``gt``: the references' exact depth; ``degraded``: the same with stereo-like holes and noise."""
    drop_view: float = 0.15
    """Probability of dropping the prior of each target view."""
    drop_batch: float = 0.1
    """Probability of dropping the prior of the whole micro-batch (references included)."""
    edge_drop: float = 0.8
    """Share of pixels at depth discontinuities (3x3 relative range > 5 %) removed (``degraded``)."""
    max_hole_share: float = 0.3
    """Random blob holes remove up to this share of each reference's pixels (``degraded``)."""
    max_noise: float = 0.02
    """Per-pixel relative depth noise, standard deviation drawn up to this value per view (``degraded``)."""
    covisible: float = 0.0
    """Probability, per sample, that each reference keeps depth only where another reference sees the same surface
    (``degraded``): two-view stereo can only match those pixels, and a lone reference gets no depth at all."""
    extrapolate: bool = False
    """After a ``covisible`` cut of two references, give the pixels beyond the other reference's frame depth
    extrapolated from the kept ones, as ``cameo-recon``'s stereo does (``cameo.geometry.fill``)."""
    proxy: bool = False
    """References left without depth (a lone one after the ``covisible`` cut) get the proxy prior sampling gives a
    lone photo (``cameo.priors.add_proxy``); the exported model records it (``prior_proxy``)."""
    measured_weight: float = 1.0
    """Weight in the denoising loss of target pixels whose prior is measured (mask 1), against 1 for the rest:
    sampling keeps those pixels as the prior shows them (the anchor), so below 1 the model spends its capacity on
    what no reference shows (1: every pixel alike)."""
    stand_in: Literal["plane", "depth_net"] = "plane"
    """What ``proxy`` gives a reference without depth: the proxy plane at mask 0.5 (``cameo.priors.add_proxy``), or
    the reference warped through the run's one-photo depth network at mask 1 (``cameo.priors.add_estimated``, as
    sampling does with a model folder's ``depth/``); ``depth_net`` needs ``<output_dir>/depth`` from ``cameo-train
    depth`` first."""


@dataclass
class CameoConfig:
    """CAMEO attention supervision (paper Sec. 3.3: layer 10, lambda 0.02, tau 1.5, MLP head, cross-entropy)."""

    enabled: bool = True
    layer: str = "10"
    """Supervised self-attention layer: forward-order index over all self-attention layers, or a module name."""
    weight: float = 0.02
    """Lambda, the weight of the CAMEO loss in the total loss."""
    tau: float = 1.5
    """Cycle-consistency threshold in tokens."""
    head: Literal["mlp", "mean"] = "mlp"
    """Projection of the per-head logits: learned MLP over heads, or their mean."""
    loss: Literal["ce", "l1"] = "ce"


@dataclass
class DepthNetConfig:
    """The ``cameo-train depth`` stage: the one-photo depth network (``cameo.geometry.mono_depth``) trained on the
    run's procedural samples and their rendered depth; exports carry it as ``depth/`` when it exists."""

    steps: int = 4500
    lr: float = 1e-3
    batch_size: int = 32
    """Images per step (whole samples of ``data.num_views`` views)."""
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)
    """Channels of each level of the network (one 2x downsampling between levels)."""
    checkpoint_every: int = 500
    """Steps between resumable checkpoints (``<output_dir>/depth_checkpoint.pt``; ``cameo-train depth --resume``)."""


@dataclass
class AutoencoderConfig:
    """The ``cameo-train autoencoder`` stage: trains the small codec of latent CPU configs on the same images."""

    steps: int = 2000
    lr: float = 1e-3
    batch_size: int = 16
    """Images per step."""
    kl_weight: float = 1e-6


@dataclass
class TrainConfig:
    """A complete training run."""

    name: str = "run"
    seed: int = 0
    output_dir: str = "runs/run"
    """Run folder: checkpoints, metrics.jsonl, the exported model and the resolved config."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """bf16 autocast for the UNet (the CAMEO loss is always computed in fp32)."""
    cfg_drop_prob: float = 0.1
    """Probability of zeroing the camera embedding (classifier-free guidance training)."""
    cfg_drop_mode: Literal["batch", "sample"] = "batch"
    """``batch``: one draw per process micro-batch drops all of it (the reference code); ``sample``: per sample."""
    checkpoint_every: int = 100
    """Optimiser steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: int = 2
    """Complete checkpoints kept on disk (older ones are deleted after a newer one is complete)."""
    snapshot_every: int = 0
    """Optimiser steps between exported model folders kept as ``<output_dir>/snapshots/step-NNNNNNN`` (learning
    curves of the benchmark evaluate them; 0: none)."""
    log_every: int = 10
    """Optimiser steps between metrics.jsonl records."""
    val_every: int = 500
    """Optimiser steps between validation runs (0 disables)."""
    val_ddim_steps: int = 10
    """DDIM steps of the validation sampler."""
    val_cfg_scale: float = 2.0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    cameo: CameoConfig = field(default_factory=CameoConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    depth_net: DepthNetConfig = field(default_factory=DepthNetConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)


class ConfigError(ValueError):
    """A config file or override names an unknown field or holds a value of the wrong type."""


def shipped_configs() -> list[str]:
    """Names of the configs shipped in ``configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    """A shipped config name (``demo-cpu``) or a path to a YAML file -> an existing path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"config {name_or_path!r} is neither a YAML file nor a shipped config "
                      f"(shipped: {shipped_configs()})")


def load_config(name_or_path: str) -> TrainConfig:
    """Read a YAML config (shipped name or path) into a ``TrainConfig``; unspecified fields keep their defaults."""
    path = resolve_config_path(name_or_path)
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of fields")
    return _build(TrainConfig, raw, source=str(path), prefix="")


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML/JSON output."""
    return _plain(dataclasses.asdict(cfg))


def dump_config(cfg: TrainConfig) -> str:
    """YAML text that ``load_config`` reads back into an equal config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, raw: dict[str, Any], source: str, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {[prefix + k for k in unknown]} (known: {sorted(known)})")
    kwargs = {}
    for key, value in raw.items():
        hint = hints[key]
        where = prefix + key
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: field {where!r} must be a mapping, got {value!r}")
            kwargs[key] = _build(hint, value, source, where + ".")
        else:
            kwargs[key] = _coerce(hint, value, source, where)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, source: str, where: str) -> Any:
    """Check ``value`` against a (simple) type hint; lists become tuples, ints become floats where expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(option, value, source, where)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: field {where!r} = {value!r} is not a {hint}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{source}: field {where!r} = {value!r} must be one of {list(args)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: field {where!r} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{source}: field {where!r} needs {len(args)} items, got {value!r}")
        return tuple(_coerce(a, v, source, where) for a, v in zip(args, value))
    if hint is type(None):
        if value is None:
            return None
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        # YAML reads `layer: 10` as an int; names and indices share one string field.
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: field {where!r} = {value!r} is not a {getattr(hint, '__name__', hint)}")
