"""Novel-view-synthesis evaluation in the paper's settings, the identity-perturbation study, and the probe runner.

Settings (Sec. 4.1): 4 views per scene; "1-to-3" = view 0 is the reference and views 1-3 targets, "2-to-2" = views
0-1 references and views 2-3 targets. Held-out procedural scenes come from the ``demo`` split of
``cameo.data.procedural``, which never overlaps training scenes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from cameo.cameras import unproject_depth
from cameo.diffusion import camera_conditioning, denoising_loss, noise_targets
from cameo.eval.baselines import DepthSource, reference_cloud, trivial_predictions
from cameo.eval.attention_viz import attended_points, draw_attention, query_lattice
from cameo.eval.metrics import ImageMetrics, psnr
from cameo.eval.probe3d import (attention_precision, correspondence_precision, probe_pair, relative_rotation_deg,
                                rotation_bin, scale_relative_threshold)
from cameo.geometry.cloud import PointCloud
from cameo.geometry.mono_depth import MonoDepthNet
from cameo.priors import PROXY_CONFIDENCE, cloud_views_prior, stand_ins_for_depthless, views_prior
from cameo.sampling import sample_views

SETTINGS = {"1-to-3": 1, "2-to-2": 2}
"""Setting name -> number of reference views among the 4 views of a scene."""

LOSS_TIMESTEPS = tuple(range(50, 1000, 100))
"""The fixed noise levels of :func:`heldout_denoising_loss` (10, spread evenly over the training range)."""


@dataclass
class EvalScene:
    """One evaluation scene: ``images [V,3,H,W]`` in [0, 1], ``K [V,3,3]``, ``c2w [V,4,4]``, world
    ``pointmaps [V,3,H,W]`` (NaN = no surface)."""

    scene_id: str
    images: torch.Tensor
    K: torch.Tensor
    c2w: torch.Tensor
    pointmaps: torch.Tensor
    depth: torch.Tensor | None = None
    """``[V,H,W]`` z-depth (NaN = no surface) when known."""
    photos: tuple[torch.Tensor, torch.Tensor] | None = None
    """The views as photos, before the resize to the model's resolution: ``images [V,3,Hp,Wp]`` and their ``K``.
    Stereo runs on these, as ``cameo-recon`` runs it on the input photos (None: on ``images``)."""


def procedural_scenes(count: int, kind: str = "object", resolution: int = 64, seed: int = 0,
                      views: int = 4, photo_resolution: int | None = None) -> Iterator[EvalScene]:
    """Held-out procedural scenes (``demo`` split), rendered on the fly with exact depth; with ``photo_resolution``
    rendered a second time at that size as the scene's photos (the bundled demo scenes' photos are 256 px)."""
    from cameo.data.procedural import generate_scene

    for index in range(count):
        scene = generate_scene(kind, seed, index, views=views, resolution=resolution, split="demo")
        K, c2w = torch.from_numpy(scene.K), torch.from_numpy(scene.c2w)
        depth = torch.from_numpy(scene.depth)
        photos = None
        if photo_resolution:
            big = generate_scene(kind, seed, index, views=views, resolution=photo_resolution, split="demo")
            photos = torch.from_numpy(big.rgb).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(big.K)
        yield EvalScene(scene.scene_id, torch.from_numpy(scene.rgb).permute(0, 3, 1, 2).float() / 255, K, c2w,
                        unproject_depth(depth, K, c2w).permute(0, 3, 1, 2), depth.float(), photos)


def mixed_procedural_scenes(count: int, resolution: int = 64, seed: int = 0,
                            photo_resolution: int | None = None) -> list[EvalScene]:
    """``count`` held-out scenes, half object-centric then half rooms (the benchmark's evaluation set)."""
    half = count // 2
    return (list(procedural_scenes(half, "object", resolution, seed, photo_resolution=photo_resolution))
            + list(procedural_scenes(count - half, "room", resolution, seed, photo_resolution=photo_resolution)))


@dataclass
class NVSResult:
    """Per-view metric rows and, per setting, picture columns per scene: references, ground truth, the warped
    prior the model saw (models with a prior, given depth) and generated targets (always last)."""

    rows: list[dict]
    examples: dict[str, list[tuple[torch.Tensor, ...]]]


def evaluate_nvs(model, codec, scenes: Iterable[EvalScene], metrics: ImageMetrics, settings: Iterable[str] = SETTINGS,
                 steps: int = 50, cfg: float = 2.0, seed: int = 0, schedule=None, perturb: Iterable[str] = (),
                 depth_sources: Iterable[DepthSource] = ("stereo",), baselines: bool = False,
                 anchors: Iterable[float] = (0.0,), anchor_until: float = 1.0, stop: float = 1.0,
                 draws: int = 1, depth_net: MonoDepthNet | None = None) -> NVSResult:
    """Generate the targets of every scene in every setting and score them against the ground truth.

    Rows carry a ``method``: ``model`` (models without a prior), ``model (<source> prior)`` for each of
    ``depth_sources`` (models with a prior: the references' point cloud from stereo between the two references as
    ``cameo-recon`` computes it, on the scene's photos when it has them; the exact depth; or none; 1-to-3 has no
    stereo), and with ``baselines`` the trivial
    predictions of :mod:`cameo.eval.baselines` on the same views. ``perturb``: layers replaced by identity
    attention during generation (empty = the normal model). ``anchors``: sampler anchor strengths to compare
    (:class:`cameo.priors.PriorAnchor`; 0 = none), each its own method; ``stop``: the fraction of
    the DDIM steps run (:func:`cameo.sampling.denoise`); ``draws``: samples averaged per prediction
    (:func:`cameo.sampling.mean_of_draws`); ``depth_net``: the model folder's one-photo depth network, for
    references without depth (also its warp as a baseline). Pictures show the first model method.
    """
    sources = tuple(depth_sources) if getattr(model, "uses_prior", False) else ("none",)
    rows, examples = [], {s: [] for s in settings}
    for scene in scenes:
        for setting in examples:
            n = SETTINGS[setting]
            refs, gt = scene.images[:n], scene.images[n:]
            photos = None if scene.photos is None else (scene.photos[0][:n], scene.photos[1][:n])
            clouds = {src: reference_cloud(refs, scene.K[:n], scene.c2w[:n],
                                           None if scene.depth is None else scene.depth[:n], src, photos)
                      for src in {*sources, *(("stereo", "gt") if baselines and scene.depth is not None else ())}}
            predictions = {}
            for src in sources:
                for anchor in anchors if src != "none" else (0.0,):
                    with model.attention_control(perturb=list(perturb)):
                        predictions[_method(src, anchor)] = sample_views(
                            model, codec, refs, scene.K[:n], scene.c2w[:n], scene.K[n:], scene.c2w[n:], steps=steps,
                            cfg=cfg, seed=seed, schedule=schedule, cloud=clouds[src], anchor=anchor,
                            anchor_until=anchor_until, stop=stop, draws=draws, depth_net=depth_net)
            shown = _warped_prior(refs, clouds.get(sources[0]), scene, n, depth_net)
            examples[setting].append((refs, gt, *shown, next(iter(predictions.values()))))
            if baselines:
                predictions.update(trivial_predictions(refs, scene.K[:n], scene.c2w[:n], scene.K[n:], scene.c2w[n:],
                                                       {src: clouds.get(src) for src in ("stereo", "gt")}, depth_net))
            for method, pred in predictions.items():
                values = metrics(pred, gt)
                for v in range(len(gt)):
                    rows.append({"scene": scene.scene_id, "setting": setting, "method": method, "view": n + v,
                                 **{k: float(x[v]) for k, x in values.items()}})
    return NVSResult(rows, examples)


def _warped_prior(refs: torch.Tensor, cloud: PointCloud | None, scene: EvalScene, n: int,
                  depth_net: MonoDepthNet | None = None) -> tuple[torch.Tensor, ...]:
    """The targets' warped prior as a picture column (black holes, the visual hull's guesses at half brightness;
    references without depth through ``depth_net`` when given), or nothing without depth."""
    if cloud is None and depth_net is None:
        return ()
    views = torch.arange(len(scene.K)) < n
    prior = cloud_views_prior(cloud, refs, scene.K, scene.c2w, views, *refs.shape[-2:], PROXY_CONFIDENCE)
    if depth_net is not None:
        prior = stand_ins_for_depthless(prior, cloud, refs, scene.K[:n], scene.c2w[:n], scene.K, scene.c2w, depth_net)
    return (prior[n:, :3] * prior[n:, 3:],)


def _method(source: str, anchor: float) -> str:
    """The table name of a model run: its depth source and, when anchored, the anchor strength."""
    if source == "none":
        return "model"
    return f"model ({source} prior{f', anchor {anchor:g}' if anchor else ''})"


def _gt_prior(model, scene: EvalScene, refs: int, repeat: int) -> torch.Tensor | None:
    """The exact-depth warped prior ``[repeat,V,4,H,W]`` of a scene's views for models that take one."""
    if not getattr(model, "uses_prior", False):
        return None
    height, width = scene.images.shape[-2:]
    mask = torch.arange(scene.images.shape[0]) < refs
    depth = None if scene.depth is None else scene.depth[:refs]
    prior = views_prior(scene.images[:refs], depth, scene.K[:refs], scene.c2w[:refs], scene.K, scene.c2w, mask,
                        height, width)
    return prior[None].expand(repeat, -1, -1, -1, -1)


def heldout_denoising_loss(model, codec, scenes: Iterable[EvalScene], schedule, settings: Iterable[str] = SETTINGS,
                           timesteps: Iterable[int] = LOSS_TIMESTEPS, seed: int = 0,
                           swap_references: bool = False) -> dict[str, float]:
    """The training objective on held-out scenes: mean denoising loss of the target views per setting.

    Every scene is noised at the same fixed ``timesteps`` with noise from a fixed seed (cameras on, no CFG), so two
    snapshots are compared on identical inputs: a low-variance learning-curve measure next to the sampled views'
    PSNR, which at small scale moves with the sampler's noise draws. ``swap_references``: the reference views are
    those of the next scene (cameras and targets unchanged), so the rise over the normal loss measures how much the
    model reads its references. Returns ``{"<setting> loss": value}``.
    """
    scenes = list(scenes)
    t = torch.tensor(list(timesteps))
    losses: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        encoded = [codec.encode(scene.images).float() for scene in scenes]
    for index, scene in enumerate(scenes):
        views, (height, width) = scene.images.shape[0], scene.images.shape[-2:]
        clean = encoded[index][None].expand(len(t), -1, -1, -1, -1)
        plucker = camera_conditioning(scene.c2w, scene.K, height, width)[None].expand(len(t), -1, -1, -1, -1)
        for setting in settings:
            refs = SETTINGS[setting]
            ref_mask = (torch.arange(views) < refs)[None].expand(len(t), -1)
            noised = noise_targets(clean, ref_mask, schedule, torch.Generator().manual_seed(seed * 100_003 + index), t)
            sample = noised.noisy
            if swap_references:
                other = encoded[(index + 1) % len(scenes)][:refs]
                sample = torch.cat([other[None].expand(len(t), -1, -1, -1, -1), sample[:, refs:]], dim=1)
            prior = _gt_prior(model, scene, refs, len(t))
            with torch.no_grad():
                pred = model(sample, noised.timesteps, plucker, ref_mask, **({} if prior is None else {"prior": prior}))
            losses.setdefault(setting, []).append(denoising_loss(pred, noised.target, ref_mask))
    return {f"{setting} loss": float(torch.stack(values).mean()) for setting, values in losses.items()}


def perturbation_rows(baseline: NVSResult, perturbed: NVSResult, layer: str) -> list[dict]:
    """Change caused by perturbing ``layer``: metrics vs ground truth and PSNR between the two generations."""
    rows = []
    for setting, pairs in baseline.examples.items():
        for (*_, ref), (*_, pert) in zip(pairs, perturbed.examples[setting]):
            rows.append({"layer": layer, "setting": setting, "psnr_to_unperturbed": float(psnr(pert, ref).mean())})
    per_view = {(r["scene"], r["setting"], r["view"]): r for r in baseline.rows}
    for row in perturbed.rows:
        base = per_view[(row["scene"], row["setting"], row["view"])]
        for key in ("psnr", "ssim", "lpips"):
            if key in row:
                rows.append({"layer": layer, "setting": row["setting"], f"delta_{key}": row[key] - base[key]})
    return rows


def probe_scenes(model, codec, scenes: Iterable[EvalScene], layers: list[str], threshold: float | None,
                 threshold_rel: float, grid: int, top_k: int = 1000, pictures: int = 0,
                 cameras: bool = False) -> tuple[list[dict], list]:
    """Correspondence precision of ``layers`` on every ordered pair (0, j) of every scene (view j = query).

    ``threshold``: absolute 3D distance (world units); None = ``threshold_rel`` x median depth of the query view.
    ``cameras``: keep the camera conditioning (the paper's protocol drops it). Returns rows (scene, pair, layer,
    rotation, bin, threshold, precision of the q/k descriptors (Probe3D), matches, ``attention_precision`` of the
    head-averaged attention's argmax, ``inverted_precision`` of its argmin (high when the logits are anti-aligned:
    lowest on the corresponding token) and, on the model's CAMEO layer, ``head_precision`` of the CAMEO head's
    logits) and up to ``pictures`` attention pictures (PIL images, one per layer for the first pairs).
    """
    head = getattr(model, "cameo_head", None)
    head_layer = model.resolve_layer(model.config.cameo_layer) if head is not None else None
    rows, images = [], []
    for scene in scenes:
        height, width = scene.images.shape[-2:]
        for j in range(1, scene.images.shape[0]):
            pair = [0, j]
            plucker = camera_conditioning(scene.c2w[pair], scene.K[pair], height, width) if cameras else None
            tokens = probe_pair(model, codec, scene.images[j], scene.images[0], layers, plucker)
            angle = relative_rotation_deg(scene.c2w[j], scene.c2w[0]).item()
            rho = threshold if threshold is not None else scale_relative_threshold(
                scene.pointmaps[j], scene.c2w[j], threshold_rel)
            points = (scene.pointmaps[j], scene.pointmaps[0], rho)
            for name, tok in tokens.items():
                dq, dk = tok.descriptors()
                res = correspondence_precision(dq, dk, scene.pointmaps[j], scene.pointmaps[0], rho, grid, top_k)
                logits = tok.logits()
                averaged = logits.mean(0)
                row = {"scene": scene.scene_id, "query_view": j, "key_view": 0, "layer": name,
                       "rotation_deg": angle, "rotation_bin": rotation_bin(angle), "threshold": rho,
                       "precision": res.precision, "matches": res.num_matches,
                       "attention_precision": attention_precision(averaged, *points).precision,
                       "inverted_precision": attention_precision(-averaged, *points).precision}
                if name == head_layer:
                    with torch.no_grad():
                        row["head_precision"] = attention_precision(head(logits[None])[0], *points).precision
                rows.append(row)
                if len(images) < pictures:
                    valid = torch.isfinite(scene.pointmaps[j]).all(0)
                    query = query_lattice(valid)
                    key = attended_points(tok, query, tuple(scene.images.shape[-2:]))
                    images.append((f"{scene.scene_id}_v{j}_{name}",
                                   draw_attention(scene.images[j], scene.images[0], query, key, title=name)))
    return rows, images
