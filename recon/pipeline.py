"""End-to-end reconstruction: scene (1-2 posed images) -> camera path -> generated views -> 3D Gaussians -> .ply.

Stages (docs/CONTRACTS.md, "Reconstruction pipeline"):

1. ``path``: camera path through/around the inputs (``trajectories.scene_path``; for 2 views the inputs are the
   path's ends), input images resized (shorter side) and centre-cropped to the model's square resolution with the
   intrinsics of every path camera updated the same way, and the two-pass plan (F = the model's views per call).
2. ``generate``: ``cameo.sampling.generate_trajectory``; then ``frames/NNNN.png`` (every path view in path order,
   inputs included), nerfstudio ``transforms.json`` and ``flythrough.mp4`` are written into the work folder.
3. ``fit``: ``recon.fit.fit_gaussians`` on all path views (L1 + SSIM, optional LPIPS; generated views weighted by
   ``generated_weight``), in the input world frame.
4. ``export``: the standard 3DGS .ply, written atomically and only after every other stage succeeded.

With ``ReconOptions.generate = False`` stages 1-2 are skipped and Gaussians are fitted to the input views alone
(what runs before a trained model is available; 1-2 views constrain the geometry poorly).

Deterministic for a given seed on a given device. Bad input raises ``cameo.scene.SceneError`` or
:class:`ReconError`; nothing is written before the model, path and options have been checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image

from cameo.atomic import atomic_dir, atomic_path
from cameo.cameras import center_crop_with_intrinsics, resize_with_intrinsics
from cameo.importers import save_nerfstudio
from cameo.model_folder import CameoModel, ModelFolderError, resolve_device
from cameo.sampling import generate_trajectory
from cameo.scene import Scene, SceneError, make_frames
from recon.fit import FitConfig, fit_gaussians
from recon.splats import Splats, export_ply
from trajectories import CameraPath, plan_generation, scene_path

ProgressFn = Callable[[str, float], None]
"""``progress(stage, fraction)`` with stage in ``"path" | "generate" | "fit" | "export"``, fraction in [0, 1]."""

TWO_VIEW_MODES = ("auto", "orbit", "linear")
ONE_VIEW_KINDS = ("auto", "circle", "orbit", "forward", "sideways")
VIDEO_FPS = 24


class ReconError(ValueError):
    """A readable problem with the reconstruction's inputs or options (missing model, bad mode, ...)."""


DEFAULT_LPIPS_WEIGHT = 0.1  # our choice: the paper (after CAT3D) adds LPIPS to L1 + SSIM without a weight


@dataclass
class ReconOptions:
    """Options of one reconstruction; defaults follow the paper's protocol (98 generated views, 50 DDIM steps,
    CFG 2.0)."""

    num_views: int = 98
    """Views to generate along the path (the inputs come on top: 2 inputs + 98 = 100 path cameras)."""
    steps: int = 50
    """DDIM steps per view group."""
    cfg: float = 2.0
    """Classifier-free guidance scale on the camera condition (1 disables guidance)."""
    seed: int = 0
    """Seed of the diffusion noise and of the Gaussian fitting."""
    fit_iterations: int = FitConfig.iterations
    """Gaussian-fitting optimisation steps."""
    fit_points: int = FitConfig.num_points
    """Gaussians at the start of fitting (random initialisation inside the cameras' views; densified later)."""
    lpips_weight: float | None = None
    """Weight of LPIPS in the fitting loss (0 = L1 + SSIM only; > 0 needs `cameo-eval install-lpips` once).
    None: ``DEFAULT_LPIPS_WEIGHT`` (L1 + SSIM + LPIPS, as the paper fits generated views) when the LPIPS weights
    are installed, else 0 (see :func:`effective_lpips_weight`)."""
    generated_weight: float = 1.0
    """Loss weight of each generated view relative to an input view (1 = all views alike, as the paper fits them;
    lower trusts the observed inputs more than the model's views)."""
    path_mode: str = "auto"
    """2 views: auto / orbit / linear. 1 view: auto (= circle) / circle / orbit / forward / sideways."""
    path_size: float = 0.15
    """1 view: motion size relative to the look-at depth (circle radius, orbit fraction of a turn, travel)."""
    checkpoint: Path | None = None
    """Exported model folder; None = the bundled ``assets/model`` (or ``$CAMEO_MODEL``)."""
    device: str = "auto"
    """auto (CUDA if available) / cpu / cuda."""
    write_video: bool = True
    """Write ``flythrough.mp4`` of the path views."""
    show_progress: bool = True
    """tqdm bars for view generation and fitting (on stderr)."""
    generate: bool = True
    """False: no model, no generated views; fit the input views alone."""
    inputs_only_size: int = 64
    """Without generation: the square resolution the input views are fitted at (shorter side, centre crop)."""


@dataclass
class ReconResult:
    """What a reconstruction wrote and produced; path views are in path order (inputs at ``input_indices``)."""

    ply: Path
    workdir: Path
    frames: list[Path]
    transforms: Path
    video: Path | None
    images: torch.Tensor  # [M, 3, S, S] in [0, 1]: inputs (resized/cropped) and generated views
    K: torch.Tensor  # [M, 3, 3] intrinsics of S x S images
    c2w: torch.Tensor  # [M, 4, 4] OpenCV camera-to-world, input world frame
    input_indices: tuple[int, ...]
    splats: Splats
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def target_indices(self) -> tuple[int, ...]:
        """Path indices of the generated views."""
        inputs = set(self.input_indices)
        return tuple(i for i in range(len(self.c2w)) if i not in inputs)


class _Stages:
    """Times stages into ``seconds`` and reports contract progress (0 at start, 1 at the end)."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def report(self, stage: str, fraction: float) -> None:
        if self.progress is not None:
            self.progress(stage, float(min(max(fraction, 0.0), 1.0)))

    @contextmanager
    def __call__(self, name: str, reported: str | None = None) -> Iterator[None]:
        if reported:
            self.report(reported, 0.0)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        if reported:
            self.report(reported, 1.0)


def run_reconstruction(
    scene: Scene,
    out_ply: str | os.PathLike[str],
    options: ReconOptions | None = None,
    workdir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    *,
    pretrained: CameoModel | None = None,
) -> ReconResult:
    """Reconstruct ``scene`` into 3D Gaussians saved at ``out_ply`` (see the module docstring for the stages).

    ``workdir`` (default ``<ply stem>_views/`` next to the ply) receives frames, ``transforms.json`` and the video.
    ``pretrained`` reuses an already loaded model (e.g. an app serving many requests) instead of
    ``options.checkpoint``.
    """
    opts = options or ReconOptions()
    out_ply = Path(out_ply)
    work = Path(workdir) if workdir is not None else out_ply.with_name(f"{out_ply.stem}_views")
    stages = _Stages(progress)
    _check_options(opts, scene)
    if opts.generate:
        with stages("load"):
            pre = pretrained if pretrained is not None else _load_model(opts)
        with stages("path", "path"):
            path = _camera_path(scene, opts)
            images, path_K = _to_model_resolution(scene.load_images(), path.K, pre.image_size)
            plan = plan_generation(len(path), path.input_indices, pre.frames_per_group, c2w=path.c2w)
        with stages("generate", "generate"):
            views = generate_trajectory(
                pre.unet, pre.codec, images.to(pre.device), path_K, path.c2w, plan, steps=opts.steps,
                cfg=opts.cfg, seed=opts.seed, schedule=pre.schedule,
                progress=lambda f: stages.report("generate", f), show_progress=opts.show_progress)
        device, c2w, input_indices = pre.device, path.c2w, path.input_indices
    else:
        images = scene.load_images()
        size = min(opts.inputs_only_size, *images.shape[-2:])
        views, path_K = _to_model_resolution(images, scene.K, size)
        c2w = scene.c2w
        device, input_indices = _device(opts.device), tuple(range(len(scene.frames)))
    with stages("views"):
        frames = _write_frames(views, work / "frames")
        size = [(views.shape[-1], views.shape[-2])] * len(views)  # (width, height)
        transforms = save_nerfstudio(make_frames(frames, path_K, c2w, size), work / "transforms.json")
        video = _write_video(views, work / "flythrough.mp4") if opts.write_video and opts.generate else None
    with stages("fit", "fit"):
        splats = fit_gaussians(views.to(device), path_K, c2w, fit_config(opts), progress=stages.report,
                               show_progress=opts.show_progress,
                               view_weights=view_weights(len(c2w), input_indices, opts.generated_weight))
    with stages("export", "export"):
        ply = export_ply(splats, out_ply)
    return ReconResult(ply, work, frames, transforms, video, views, path_K, c2w, input_indices,
                       splats.detach(), stages.seconds)


def _check_options(opts: ReconOptions, scene: Scene) -> None:
    """Reject bad options before any work (and, with LPIPS on, missing LPIPS weights before generation)."""
    modes = TWO_VIEW_MODES if len(scene.frames) == 2 else ONE_VIEW_KINDS
    if opts.path_mode not in modes:
        raise ReconError(f"path mode {opts.path_mode!r} does not apply to {len(scene.frames)} input view(s); "
                         f"choose one of {', '.join(modes)}")
    checks = [(opts.num_views >= 1, "num_views must be >= 1"), (opts.steps >= 1, "steps must be >= 1"),
              (opts.fit_iterations >= 1, "fit_iterations must be >= 1"),
              (opts.fit_points >= 1, "fit_points must be >= 1"), (opts.cfg > 0, "cfg must be > 0"),
              (opts.lpips_weight is None or opts.lpips_weight >= 0, "lpips_weight must be >= 0"),
              (opts.path_size > 0, "path_size must be > 0"),
              (0 < opts.generated_weight < float("inf"), "generated_weight must be > 0 and finite")]
    for ok, message in checks:
        if not ok:
            raise ReconError(message)
    if opts.lpips_weight is not None and opts.lpips_weight > 0:
        from cameo.eval.lpips import LPIPSWeightsMissing, load_lpips

        try:
            load_lpips(FitConfig.lpips_net)
        except LPIPSWeightsMissing as err:
            raise ReconError(f"lpips_weight > 0 needs LPIPS weights: {err}") from None


def fit_config(opts: ReconOptions) -> FitConfig:
    """The Gaussian-fitting settings of a reconstruction with ``opts``."""
    return FitConfig(iterations=opts.fit_iterations, num_points=opts.fit_points,
                     lpips_weight=effective_lpips_weight(opts.lpips_weight), seed=opts.seed)


def view_weights(num_views: int, input_indices: tuple[int, ...], generated_weight: float) -> torch.Tensor:
    """Fitting loss weight per path view: 1 for the inputs, ``generated_weight`` for the generated views."""
    weights = torch.full((num_views,), float(generated_weight))
    weights[list(input_indices)] = 1.0
    return weights


def lpips_installed() -> bool:
    """Whether the LPIPS network of the fitting loss has local weights (checked without loading them)."""
    from cameo.eval.lpips import lpips_weights_found

    return lpips_weights_found(FitConfig.lpips_net)


def effective_lpips_weight(weight: float | None) -> float:
    """``weight``, or for None (the default) ``DEFAULT_LPIPS_WEIGHT`` if LPIPS is installed and 0 otherwise."""
    if weight is not None:
        return weight
    return DEFAULT_LPIPS_WEIGHT if lpips_installed() else 0.0


def _load_model(opts: ReconOptions) -> CameoModel:
    try:
        return CameoModel.from_pretrained(opts.checkpoint, opts.device)
    except (ModelFolderError, ValueError) as err:
        raise ReconError(str(err)) from None


def _device(device: str) -> torch.device:
    try:
        return resolve_device(device)
    except ValueError as err:
        raise ReconError(str(err)) from None


def _camera_path(scene: Scene, opts: ReconOptions) -> CameraPath:
    try:
        return scene_path(scene, opts.num_views, opts.path_mode, opts.path_size)
    except SceneError:
        raise
    except ValueError as err:
        raise ReconError(f"camera path: {err}") from None


def _to_model_resolution(images: torch.Tensor, K: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``images [N,3,H,W]`` so the shorter side is ``size``, centre-crop to ``size x size``.

    ``K [V,3,3]`` may hold other cameras than the images' (the whole path, all for the input image size): both
    helpers change K independently of the images, so every camera gets the same resize + crop.
    """
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    resized = (max(size, round(height * scale)), max(size, round(width * scale)))
    images, K = resize_with_intrinsics(images, K, resized)
    images, K = center_crop_with_intrinsics(images, K, (size, size))
    return images.clamp(0, 1), K


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[V,3,H,W]`` in [0, 1] -> ``[V,H,W,3]`` uint8."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _write_frames(images: torch.Tensor, folder: Path) -> list[Path]:
    """PNG per view (``NNNN.png``) written into a temp folder that then replaces ``folder`` as a whole."""
    with atomic_dir(folder, overwrite=True) as tmp:
        for i, array in enumerate(_to_uint8(images)):
            Image.fromarray(array).save(tmp / f"{i:04d}.png")
    return [folder / f"{i:04d}.png" for i in range(len(images))]


def _write_video(images: torch.Tensor, path: Path) -> Path:
    """H.264 mp4 of the views in path order (imageio's ffmpeg writer; needs imageio-ffmpeg), written atomically."""
    with atomic_path(path) as tmp:
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=VIDEO_FPS, codec="libx264",
                                macro_block_size=2, ffmpeg_log_level="error") as writer:
            for frame in _to_uint8(images):
                writer.append_data(frame)
    return path
