"""``cameo-data``: generate procedural training sets, render held-out demo scenes, draw a check grid or a scene's
geometry (stereo depth and point cloud)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from .procedural import KINDS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cameo-data",
        description="Procedural multi-view training data with exact RGB, z-depth and OpenCV cameras.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="render a sharded dataset (reproducible, resumable: rerun to finish)")
    g.add_argument("out", type=Path, help="output folder (manifest.json + shard_*/)")
    g.add_argument("--kind", choices=KINDS, default="object",
                   help="object: objects on a ground, orbiting cameras (CO3D-like); room: walk through a room "
                        "(RealEstate10K-like)")
    g.add_argument("--num-scenes", type=int, default=1000, help="number of scenes")
    g.add_argument("--seed", type=int, default=0, help="scene k depends only on (seed, k)")
    g.add_argument("--views", type=int, default=8, help="views rendered per scene (samples draw F of them)")
    g.add_argument("--resolution", type=int, default=64, help="square image size in pixels")
    g.add_argument("--supersample", type=int, default=2, help="s x s colour samples per pixel (1 = no antialiasing)")
    g.add_argument("--shard-size", type=int, default=50, help="scenes per shard")
    g.add_argument("--workers", type=int, default=1, help="parallel worker processes (1 thread each)")
    g.add_argument("--meshes", type=Path, nargs="*", default=[],
                   help="mesh files (or folders of .obj/.ply/.stl/.glb/.off) to place as objects besides primitives")

    d = sub.add_parser("demo", help="held-out demo scenes: scene.json (1-2 inputs) + ground-truth views")
    d.add_argument("out", type=Path, help="output folder (one subfolder per scene)")
    d.add_argument("--count", type=int, default=2, help="scenes per kind")
    d.add_argument("--kinds", choices=KINDS, nargs="+", default=list(KINDS))
    d.add_argument("--inputs", type=int, choices=(1, 2), default=2, help="input frames in scene.json")
    d.add_argument("--views", type=int, default=8, help="ground-truth views per scene")
    d.add_argument("--resolution", type=int, default=128)
    d.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("show", help="PNG grid: views, depth, colour-coded token correspondences of view 0 in view 1 "
                                    "(a procedural scene, or a real capture with its pointmap source)")
    s.add_argument("out", type=Path, help="PNG to write")
    s.add_argument("--dataset", type=Path, help="dataset folder from `generate` (default: render a scene now)")
    s.add_argument("--index", type=int, default=0, help="scene index (sequence index with --source)")
    s.add_argument("--kind", choices=KINDS, default="object", help="scene kind when rendering now")
    s.add_argument("--resolution", type=int, default=64)
    s.add_argument("--num-views", type=int, default=4)
    s.add_argument("--tokens", type=int, default=16, help="token grid side for the correspondences")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--source", choices=REAL_SOURCES,
                   help="a real capture read by cameo.data.loaders.<source> at --path instead of procedural data")
    s.add_argument("--path", type=Path, help="the real capture (as data.path of cameo-train)")
    s.add_argument("--frames", type=int, nargs="+", help="frames of the sequence to show (default: drawn by --seed); "
                                                         "correspondences go from the first to the second")
    s.add_argument("--pointmaps", choices=("stereo", "vggt", "dataset"), default="stereo",
                   help="pointmap source of a real capture, as data.pointmaps of cameo-train (default: stereo)")
    s.add_argument("--vggt-checkpoint", type=Path, help="local VGGT-1B model.pt for --pointmaps vggt")
    s.add_argument("--pointmap-cache", type=Path, default=Path("runs/pointmaps"),
                   help="stereo / VGGT pointmap cache (share it with cameo-train's data.pointmap_cache)")
    s.add_argument("--pointmap-max-side", type=int, default=256,
                   help="working resolution of stereo / VGGT pointmaps (longer side)")

    q = sub.add_parser("geometry", help="PNG of a scene's inputs, their depth (stereo or given maps) and confidence, "
                                        "and the fused point cloud seen from cameras along the path")
    q.add_argument("scene", type=Path, help="scene.json (1-2 frames; depth maps optional)")
    q.add_argument("--out", type=Path, required=True, help="PNG to write")
    q.add_argument("--views", type=int, default=4, help="path cameras to render the cloud into")
    q.add_argument("--max-side", type=int, default=256, help="working resolution of stereo (long side)")
    return p


REAL_SOURCES = ("dtu", "nerfstudio", "colmap", "realestate10k", "co3d")
MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf", ".off")


def _mesh_files(paths: list[Path]) -> tuple[str, ...]:
    files = []
    for p in paths:
        if p.is_dir():
            files += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in MESH_SUFFIXES)
        elif p.is_file():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"--meshes: {p} does not exist")
    if paths and not files:
        raise FileNotFoundError(f"--meshes: no mesh files ({', '.join(MESH_SUFFIXES)}) in {[str(p) for p in paths]}")
    return tuple(files)


def _show(args: argparse.Namespace) -> Path:
    from .dataset import ProceduralDataset, make_sample
    from .procedural import generate_scene
    from .visualize import sample_grid, write_png_atomic

    if args.source is not None:
        sample = _real_sample(args)
    elif args.dataset is not None:
        sample = ProceduralDataset(args.dataset, num_views=args.num_views, seed=args.seed)[args.index]
    else:
        s = generate_scene(args.kind, args.seed, args.index, args.num_views, args.resolution)
        images = torch.from_numpy(s.rgb).permute(0, 3, 1, 2).float() / 255
        sample = make_sample(images, torch.from_numpy(s.K), torch.from_numpy(s.c2w), torch.from_numpy(s.depth),
                             None, 1, s.scene_id)
    return write_png_atomic(args.out, sample_grid(sample, (args.tokens, args.tokens)))


def _real_sample(args: argparse.Namespace) -> dict:
    """A sample of a real capture with pointmaps from ``--pointmaps``; prints the share of view 0's tokens that
    pass the cycle check in view 1."""
    import importlib

    from cameo.correspondence import token_correspondences

    from .frame_depth import VGGTDepth
    from .pointmaps import VGGTPointmaps
    from .stereo_pointmaps import StereoPointmaps

    if args.path is None:
        raise ValueError("--source needs --path (the capture)")
    if args.pointmaps == "vggt" and args.vggt_checkpoint is None:
        raise ValueError("--pointmaps vggt needs --vggt-checkpoint (a local VGGT-1B model.pt)")
    side = args.pointmap_max_side
    source = {"stereo": lambda: StereoPointmaps(args.pointmap_cache, side),
              "vggt": lambda: VGGTDepth(VGGTPointmaps.from_checkpoint(args.vggt_checkpoint), args.pointmap_cache,
                                        side, checkpoint=str(args.vggt_checkpoint)),
              "dataset": lambda: None}
    loader = importlib.import_module(f"cameo.data.loaders.{args.source}")
    data = loader.open_dataset(args.path, num_views=len(args.frames or []) or args.num_views,
                               resolution=args.resolution, seed=args.seed, pointmaps=source[args.pointmaps]())
    if args.pointmaps == "dataset" and not data.has_depth:
        raise ValueError(f"{args.path}: this capture has no depth maps; use --pointmaps stereo or vggt")
    sample = data.sample(args.index, args.frames, 1) if args.frames else data[args.index]
    valid = token_correspondences(sample["pointmaps"][None], (args.tokens, args.tokens)).valid[0, 0, 1]
    print(f"{100 * float(valid.float().mean()):.1f} % of view 0's {args.tokens}x{args.tokens} tokens pass the cycle "
          "check in view 1", file=sys.stderr)
    return sample


def _geometry(args: argparse.Namespace) -> Path:
    from cameo.geometry.cloud import scene_depth
    from cameo.geometry.picture import geometry_picture
    from cameo.scene import load_scene
    from trajectories.paths import scene_path

    from .visualize import write_png_atomic

    scene = load_scene(args.scene)
    images, K, c2w = scene.load_images(), scene.K, scene.c2w
    found = scene_depth(images, K, c2w, scene.load_depths(), args.max_side)
    if found is None:
        raise ValueError(f"{args.scene}: one view without a depth map gives no geometry")
    small, depth = found.images, found.depth
    path = scene_path(scene, n_targets=args.views)
    K_path = path.K.clone()
    K_path[:, :2] *= torch.tensor([[small.shape[-1] / images.shape[-1]], [small.shape[-2] / images.shape[-2]]])
    targets = list(path.target_indices)
    picture = geometry_picture(small, depth, found.confidence, found.point_cloud(c2w), K_path[targets],
                               path.c2w[targets])
    return write_png_atomic(args.out, picture)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        if args.command == "generate":
            from .shards import DatasetConfig, generate_dataset

            config = DatasetConfig(args.kind, args.num_scenes, args.seed, args.views, args.resolution,
                                   args.supersample, args.shard_size, _mesh_files(args.meshes))
            start = time.perf_counter()
            manifest = generate_dataset(args.out, config, workers=args.workers)
            wall = time.perf_counter() - start
            print(f"wrote {manifest} ({args.num_scenes} scenes, {wall:.1f} s, {args.num_scenes / wall:.2f} scenes/s)")
        elif args.command == "demo":
            from .demo import make_demo_scenes

            for path in make_demo_scenes(args.out, args.count, tuple(args.kinds), args.inputs, args.views,
                                         args.resolution, args.seed):
                print(path)
        elif args.command == "geometry":
            print(_geometry(args))
        else:
            print(_show(args))
    except (OSError, ValueError) as err:
        print(f"cameo-data: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
