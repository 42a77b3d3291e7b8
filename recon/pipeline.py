"""End-to-end reconstruction: scene (1-2 posed images) -> camera path -> generated views -> 3D Gaussians -> .ply.

Stages (docs/CONTRACTS.md, "Reconstruction pipeline"):

1. ``path``: camera path through/around the inputs (``trajectories.scene_path``; for 2 views the inputs are the
   path's ends); the input photos at their fitting size (whole field of view, shorter side at most
   ``input_max_side``); for the model, inputs resized and centre-cropped to its square resolution with the
   intrinsics of every path camera updated the same way, and the two-pass plan (F = the model's views per call).
   ``geometry``: the inputs' point cloud (two-view stereo), which initialises the Gaussians.
2. ``generate``: ``cameo.sampling.generate_trajectory``; then ``frames/NNNN.png`` (every path view in path order:
   inputs at their fitting size, generated views at the model's), nerfstudio ``transforms.json`` and
   ``views.json`` (input frames, fly-through cameras) are written into the work folder.
3. ``fit``: ``recon.fit.fit_gaussians`` on all path views in one optimisation (L1 + SSIM, optional LPIPS;
   generated views weighted by ``generated_weight`` and CAT3D's distance falloff), in the input world frame; then
   ``flythrough.mp4`` (the Gaussians rendered along the path at the inputs' fitting size) and ``generated.mp4``.
4. ``export``: the standard 3DGS .ply, written atomically and only after every other stage succeeded.

With ``ReconOptions.generate = False`` generation is skipped and Gaussians are fitted to the input views alone
(what runs before a trained model is available; 1-2 views constrain the geometry poorly).

Deterministic for a given seed on a given device. Bad input raises ``cameo.scene.SceneError`` or
:class:`ReconError`; nothing is written before the model, path and options have been checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image

from cameo.atomic import atomic_dir, atomic_path, write_json_atomic
from cameo.cameras import center_crop_with_intrinsics, resize_with_intrinsics, scale_intrinsics
from cameo.geometry.cloud import PointCloud, scene_point_cloud
from cameo.importers import save_nerfstudio
from cameo.model_folder import CameoModel, ModelFolderError, resolve_device
from cameo.sampling import generate_trajectory
from cameo.scene import Scene, SceneError, make_frames
from recon.fit import FitConfig, fit_gaussians
from recon.splats import Splats, export_ply, render
from trajectories import CameraPath, plan_generation, scene_path

ProgressFn = Callable[[str, float], None]
"""``progress(stage, fraction)`` with stage in ``"path" | "generate" | "fit" | "export"``, fraction in [0, 1]."""

TWO_VIEW_MODES = ("auto", "orbit", "linear")
ONE_VIEW_KINDS = ("auto", "circle", "orbit", "forward", "sideways")
VIDEO_FPS = 24
VIEWS_JSON = "views.json"  # in the work folder: which frames are inputs, and the fly-through cameras


class ReconError(ValueError):
    """A readable problem with the reconstruction's inputs or options (missing model, bad mode, ...)."""


DEFAULT_INPUT_SIDE = 256  # shorter side of the fitted inputs (the floor issue 22 sets; not yet tuned by measurement)


@dataclass
class ReconOptions:
    """Options of one reconstruction: the paper's 98 generated views with 20 DDIM steps instead of 50 (on the bundled
    models 50 instead of 20 steps moved the held-out score by at most 0.15 dB, README "The bundled model"), of which
    the first quarter run before the sampler returns its clean estimate (``stop``), no classifier-free guidance and
    the sampler anchored to the inputs' warped point cloud (on 8 held-out scenes, 2-to-2 with stereo priors and all
    20 steps: 18.76 dB / SSIM 0.387 / LPIPS 0.492 against 18.12 / 0.304 / 0.551 with CFG 2 unanchored, measured
    before the warp fix), and a short fit from the inputs' point cloud, to keep the whole run within minutes on a CPU
    (400 iterations: on the object demo scene 300 re-rendered the inputs at 24.4 dB, 400 at 27.3 dB, with +0.6 dB on
    held-out views)."""

    num_views: int = 98
    """Views to generate along the path (the inputs come on top: 2 inputs + 98 = 100 path cameras)."""
    steps: int = 20
    """DDIM steps per view group (the paper: 50)."""
    cfg: float = 1.0
    """Classifier-free guidance scale on the camera condition (1 disables guidance; the paper: 2)."""
    anchor: float = 1.0
    """How far each DDIM step's clean estimate is pulled toward the inputs' warped point cloud where it is valid
    (0 = not at all, 1 = replaced; :class:`cameo.priors.PriorAnchor`). Needs a point cloud (stereo or depth)."""
    anchor_until: float = 1.0
    """Fraction of the DDIM steps that are anchored (the last ones stay free to smooth seams)."""
    stop: float = 0.25
    """Fraction of the DDIM steps run; the last one run gives its clean estimate (:func:`cameo.sampling.denoise`).
    On 8 held-out scenes (2-to-2, stereo priors, anchored) the stage-2 bundled model's full 20-step sample scores
    20.04 dB / SSIM 0.555 / LPIPS 0.367 and its estimate after 5 of 20 steps 21.31 / 0.616 / 0.338 (1 step: 21.46 /
    0.592 / 0.352; stage 3: 20.18 / 0.559 / 0.363 against 21.52 / 0.624 / 0.329; README "The bundled model"): a
    small model's samples carry speckle that its clean estimate at a higher noise level does not."""
    draws: int = 2
    """Samples averaged per view, each from its own noise (:func:`cameo.sampling.mean_of_draws`); each costs one
    generation. Two against one, bundled model, grown floor and hull: the 8 held-out 2-to-2 scenes 22.38 / 0.707 /
    0.269 against 22.23 / 0.699 / 0.270 (set 1: 21.35 / 0.641 / 0.350 against 21.30 / 0.635 / 0.350); the demo
    object's splat is level (21.01 / 0.762 against 21.06 / 0.765 held-out at 64 px: the fit averages the views
    anyway), for 39 s of generation instead of 20."""
    depth_net: bool = True
    """Photos without depth (one photo, or a pair stereo cannot match) are warped through the model folder's
    one-photo depth network when it has one (``depth/``); off, or without one, the proxy plane stands in. The bundled
    network knows the procedural training scenes only; depth maps in ``scene.json`` always win."""
    seed: int = 0
    """Seed of the diffusion noise and of the Gaussian fitting."""
    fit_iterations: int = FitConfig.iterations
    """Gaussian-fitting optimisation steps."""
    fit_points: int = FitConfig.num_points
    """Gaussians at the start of fitting when the inputs give no point cloud: half on the inputs' pixel rays at the
    cameras' look-at depth, half random inside the cameras' views (room_00, whose pair stereo cannot match: held-out
    17.62 dB / SSIM 0.411 and inputs re-rendered at 41.9 dB, against 13.57 / 0.150 and 17.9 dB all random)."""
    fit_max_gaussians: int = FitConfig.max_gaussians
    """Most Gaussians the fit keeps (a larger point cloud is subsampled; densification stops there)."""
    fit_patch: int = FitConfig.patch
    """Views larger than this are fitted through random patches of this size. 256 (whole inputs at the default
    ``input_max_side``) by measurement against 96 px patches: the inputs re-render at 37.6 / 32.1 / 41.5 / 17.4 dB
    instead of 23.1 / 15.4 / 28.1 / 14.7 (DTU 13,14 and 22,25, object_00, room_00), held-out views of the real DTU
    captures improve (13,14 -> 9: 15.42 dB / SSIM 0.848 against 11.56 / 0.815; 22,25: 17.97 / 0.653 against 17.40
    / 0.674, LPIPS 0.434 against 0.461) and those of the procedural demo scenes lose a little (object_00 18.93 /
    0.535 against 19.23 / 0.585, room_00 13.44 / 0.146 against 13.64 / 0.151); the fit takes 2-3x longer.
    Measured with the stage-2 bundled model's views."""
    distance_falloff: float = FitConfig.distance_falloff
    """CAT3D's trust in generated views: weight ``exp(-b s^2)`` by distance ``s`` to the nearest input camera
    (in units of the cameras' radius around their centroid), ``b`` rising from 0 to this over the fit."""
    lpips_weight: float = 0.0
    """Weight of LPIPS-AlexNet in the fitting loss (> 0 needs `cameo-eval install-lpips` once). 0 by measurement:
    the paper (after CAT3D) adds LPIPS to L1 + SSIM, but on both demo scenes a weight of 0.1 fitted worse on held-out
    views, LPIPS included (benchmarks/bench_recon_e2e.py, README "Quick start")."""
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
    """Write ``flythrough.mp4`` (the fitted Gaussians along the path) and ``generated.mp4`` (the generated views)."""
    show_progress: bool = True
    """tqdm bars for view generation and fitting (on stderr)."""
    generate: bool = True
    """False: no model, no generated views; fit the input views alone."""
    input_max_side: int = DEFAULT_INPUT_SIDE
    """Input photos are fitted at their own aspect ratio and field of view, resized so the shorter side is at most
    this (never enlarged); the fly-through is rendered at that size too."""


@dataclass
class ReconResult:
    """What a reconstruction wrote and produced; path views are in path order (inputs at ``input_indices``)."""

    ply: Path
    workdir: Path
    frames: list[Path]
    transforms: Path
    video: Path | None
    images: list[torch.Tensor]  # [3, H_i, W_i] in [0, 1]: inputs at their fitting size, generated views (model size)
    K: torch.Tensor  # [M, 3, 3] intrinsics of each view's own image size
    c2w: torch.Tensor  # [M, 4, 4] OpenCV camera-to-world, input world frame
    input_indices: tuple[int, ...]
    splats: Splats
    stage_seconds: dict[str, float] = field(default_factory=dict)
    flythrough_cameras: "PathCameras | None" = None  # the path at the inputs' fitting size (the fly-through's)
    generated_video: Path | None = None  # the generated views' own video (model resolution)

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
    pre = None
    if opts.generate:
        with stages("load"):
            pre = pretrained if pretrained is not None else _load_model(opts)
    with stages("path", "path"):
        path = _camera_path(scene, opts)
        photos = scene.load_images()
        inputs, input_K = fit_resolution(photos, scene.K, opts.input_max_side)
        fly = flythrough_cameras(path, photos.shape[-2:], opts.input_max_side)
        if pre is not None:
            images, path_K = _to_model_resolution(photos, path.K, pre.image_size)
            plan = plan_generation(len(path), path.input_indices, pre.frames_per_group, c2w=path.c2w)
    with stages("geometry"):
        cloud = input_point_cloud(photos, scene.K, scene.c2w, scene.load_depths())
    if pre is not None:
        with stages("generate", "generate"):
            generated = generate_trajectory(
                pre.unet, pre.codec, images.to(pre.device), path_K, path.c2w, plan, steps=opts.steps,
                cfg=opts.cfg, seed=opts.seed, schedule=pre.schedule,
                progress=lambda f: stages.report("generate", f), show_progress=opts.show_progress, cloud=cloud,
                anchor=opts.anchor, anchor_until=opts.anchor_until, stop=opts.stop, draws=opts.draws,
                depth_net=pre.depth_net if opts.depth_net else None)
        views = _path_views(inputs, input_K, generated.cpu(), path_K, path)
    else:
        views = FittedViews(list(inputs), input_K, scene.c2w, tuple(range(len(scene.frames))))
    device = pre.device if pre is not None else _device(opts.device)
    with stages("views"):
        frames, transforms = _write_views(views, fly, work)
    with stages("fit", "fit"):
        splats = fit_gaussians([v.to(device) for v in views.images], views.K, views.c2w, fit_config(opts),
                               progress=stages.report, show_progress=opts.show_progress, cloud=cloud,
                               observed=views.observed(),
                               view_weights=view_weights(len(views.c2w), views.input_indices, opts.generated_weight))
    videos: dict[str, Path] = {}
    if opts.write_video:
        with stages("video"):
            videos = _write_videos(splats, views, fly, work)
    with stages("export", "export"):
        ply = export_ply(splats, out_ply)
    return ReconResult(ply, work, frames, transforms, videos.get("flythrough"), views.images, views.K, views.c2w,
                       views.input_indices, splats.detach(), stages.seconds, fly, videos.get("generated"))


def _check_options(opts: ReconOptions, scene: Scene) -> None:
    """Reject bad options before any work (and, with LPIPS on, missing LPIPS weights before generation)."""
    modes = TWO_VIEW_MODES if len(scene.frames) == 2 else ONE_VIEW_KINDS
    if opts.path_mode not in modes:
        raise ReconError(f"path mode {opts.path_mode!r} does not apply to {len(scene.frames)} input view(s); "
                         f"choose one of {', '.join(modes)}")
    checks = [(opts.num_views >= 1, "num_views must be >= 1"), (opts.steps >= 1, "steps must be >= 1"),
              (opts.fit_iterations >= 1, "fit_iterations must be >= 1"),
              (opts.fit_points >= 1, "fit_points must be >= 1"), (opts.cfg > 0, "cfg must be > 0"),
              (0 <= opts.anchor <= 1 and 0 <= opts.anchor_until <= 1, "anchor and anchor_until must lie in [0, 1]"),
              (0 < opts.stop <= 1, "stop must lie in (0, 1]"), (opts.draws >= 1, "draws must be >= 1"),
              (opts.fit_max_gaussians >= 1, "fit_max_gaussians must be >= 1"),
              (opts.fit_patch >= 16, "fit_patch must be >= 16"),
              (opts.input_max_side >= 16, "input_max_side must be >= 16"),
              (opts.distance_falloff >= 0, "distance_falloff must be >= 0"),
              (opts.lpips_weight >= 0, "lpips_weight must be >= 0"),
              (opts.path_size > 0, "path_size must be > 0"),
              (0 < opts.generated_weight < float("inf"), "generated_weight must be > 0 and finite")]
    for ok, message in checks:
        if not ok:
            raise ReconError(message)
    if opts.lpips_weight > 0:
        from cameo.eval.lpips import LPIPSWeightsMissing, load_lpips

        try:
            load_lpips(FitConfig.lpips_net)
        except LPIPSWeightsMissing as err:
            raise ReconError(f"lpips_weight > 0 needs LPIPS weights: {err}") from None


def fit_config(opts: ReconOptions) -> FitConfig:
    """The Gaussian-fitting settings of a reconstruction with ``opts``."""
    return FitConfig(iterations=opts.fit_iterations, num_points=opts.fit_points,
                     max_gaussians=opts.fit_max_gaussians, patch=opts.fit_patch, distance_falloff=opts.distance_falloff,
                     lpips_weight=opts.lpips_weight, seed=opts.seed)


def view_weights(num_views: int, input_indices: tuple[int, ...], generated_weight: float) -> torch.Tensor:
    """Fitting loss weight per path view: 1 for the inputs, ``generated_weight`` for the generated views."""
    weights = torch.full((num_views,), float(generated_weight))
    weights[list(input_indices)] = 1.0
    return weights


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


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) with the shorter side at most ``max_side``, aspect ratio kept (never enlarged)."""
    scale = min(1.0, max_side / min(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_resolution(images: torch.Tensor, K: torch.Tensor, max_side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input photos ``[N,3,H,W]`` resized (whole field of view, aspect kept) to :func:`fit_size`, with their
    ``K``."""
    images, K = resize_with_intrinsics(images, K, fit_size(*images.shape[-2:], max_side))
    return images.clamp(0, 1), K


@dataclass
class PathCameras:
    """Cameras of the path at one image size (the fly-through's): OpenCV ``c2w [M,4,4]``, ``K [M,3,3]``."""

    K: torch.Tensor
    c2w: torch.Tensor
    width: int
    height: int
    input_indices: tuple[int, ...]


def flythrough_cameras(path: CameraPath, photo_hw: Sequence[int], max_side: int) -> PathCameras:
    """The path's cameras (``path.K`` is for the photos' size) at the inputs' fitting size."""
    height, width = fit_size(int(photo_hw[0]), int(photo_hw[1]), max_side)
    K = scale_intrinsics(path.K, width / photo_hw[1], height / photo_hw[0])
    return PathCameras(K, path.c2w, width, height, path.input_indices)


@dataclass
class FittedViews:
    """The views Gaussians are fitted to, in path order: inputs at their fitting size, generated views at the
    model's; ``K`` of each view is for its own size."""

    images: list[torch.Tensor]
    K: torch.Tensor
    c2w: torch.Tensor
    input_indices: tuple[int, ...]

    def observed(self) -> torch.Tensor:
        """``[M]`` bool: True for the captured inputs."""
        mask = torch.zeros(len(self.images), dtype=torch.bool)
        mask[list(self.input_indices)] = True
        return mask


def _path_views(inputs: torch.Tensor, input_K: torch.Tensor, generated: torch.Tensor, path_K: torch.Tensor,
                path: CameraPath) -> FittedViews:
    """Every path view: the inputs at their fitting size (their own K), the rest generated (model-size K)."""
    images, K = list(generated), path_K.clone()
    for j, i in enumerate(path.input_indices):
        images[i], K[i] = inputs[j], input_K[j]
    return FittedViews(images, K, path.c2w, path.input_indices)


def input_point_cloud(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor,
                      depths: list[torch.Tensor | None] | None = None) -> PointCloud | None:
    """The inputs' fused point cloud in their world frame (their depth maps, else two-view stereo); None for one
    view without depth."""
    return scene_point_cloud(images, K, c2w, depths)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[V,3,H,W]`` in [0, 1] -> ``[V,H,W,3]`` uint8."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _write_views(views: FittedViews, fly: PathCameras, work: Path) -> tuple[list[Path], Path]:
    """``frames/NNNN.png`` per fitted view (each at its own size), nerfstudio ``transforms.json`` and
    ``views.json`` (which frames are inputs, and the fly-through cameras, for ``cameo-view``)."""
    folder = work / "frames"
    with atomic_dir(folder, overwrite=True) as tmp:
        for i, image in enumerate(views.images):
            Image.fromarray(_to_uint8(image[None])[0]).save(tmp / f"{i:04d}.png")
    frames = [folder / f"{i:04d}.png" for i in range(len(views.images))]
    sizes = [(int(im.shape[-1]), int(im.shape[-2])) for im in views.images]  # (width, height)
    transforms = save_nerfstudio(make_frames(frames, views.K, views.c2w, sizes), work / "transforms.json")
    write_json_atomic(work / VIEWS_JSON, {
        "input_frames": list(views.input_indices), "flythrough": {
            "width": fly.width, "height": fly.height, "K": fly.K.tolist(), "c2w": fly.c2w.tolist(),
            "input_indices": list(fly.input_indices)}})
    return frames, transforms


def _write_videos(splats: Splats, views: FittedViews, fly: PathCameras, work: Path) -> dict[str, Path]:
    """``flythrough.mp4``: the fitted Gaussians rendered along the path at the inputs' size; ``generated.mp4``:
    the generated views themselves (when there are any)."""
    frames = (_to_uint8(render(splats, fly.K[i : i + 1], fly.c2w[i : i + 1], fly.width, fly.height))[0]
              for i in range(len(fly.c2w)))
    out = {"flythrough": _write_video(frames, work / "flythrough.mp4")}
    inputs = set(views.input_indices)
    generated = [views.images[i] for i in range(len(views.images)) if i not in inputs]
    if generated:
        out["generated"] = _write_video(iter(_to_uint8(torch.stack(generated))), work / "generated.mp4")
    return out


def _write_video(frames: Iterator[np.ndarray], path: Path) -> Path:
    """H.264 mp4 of ``[H,W,3]`` uint8 frames (imageio's ffmpeg writer; needs imageio-ffmpeg), written atomically."""
    with atomic_path(path) as tmp:
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=VIDEO_FPS, codec="libx264",
                                macro_block_size=2, ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(frame)
    return path
