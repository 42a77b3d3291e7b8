"""Random procedural scenes and camera paths: object-centric (CO3D-like) and rooms (RealEstate10K-like).

Scene ``k`` of a dataset depends only on ``(seed, k, kind, split)`` through a NumPy ``SeedSequence``, so any scene
can be regenerated alone and the demo split never overlaps training scenes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from cameo.cameras import look_at

from .primitives import Box, Plane, Primitive, Sphere, TriangleMesh
from .render import SceneSpec, render_views
from .textures import random_texture

KINDS = ("object", "room")
SPLITS = {"train": 0, "demo": 1}
WORLD_UP = (0.0, 0.0, 1.0)


@dataclass
class RenderedScene:
    """A rendered scene: ``rgb [V,H,W,3]`` uint8, ``depth [V,H,W]`` float32 z-depth (NaN = sky), OpenCV cameras."""

    scene_id: str
    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray  # [V, 3, 3] float32
    c2w: np.ndarray  # [V, 4, 4] float32


def scene_rng(seed: int, index: int, kind: str, split: str = "train") -> np.random.Generator:
    """Independent random stream per (seed, scene index, kind, split)."""
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; choose from {KINDS}")
    return np.random.default_rng([seed, index, KINDS.index(kind), SPLITS[split]])


def _rot_z(angle: float, tilt: float = 0.0) -> tuple[tuple[float, ...], ...]:
    """Rotation about world z by ``angle`` after a small tilt about x (local -> world)."""
    ca, sa, ct, st = math.cos(angle), math.sin(angle), math.cos(tilt), math.sin(tilt)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, ct, -st], [0, st, ct]])
    return tuple(tuple(float(x) for x in row) for row in rz @ rx)


@functools.lru_cache(maxsize=64)
def _load_user_mesh(path: str) -> trimesh.Trimesh:
    """A user mesh centred and scaled to unit largest extent (cached per process)."""
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise ValueError(f"cannot read mesh file {path}: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"mesh file {path} contains no triangles")
    mesh = mesh.copy()
    mesh.apply_translation(-mesh.bounds.mean(0))
    mesh.apply_scale(1.0 / float(mesh.extents.max()))
    return mesh


def _random_object(rng: np.random.Generator, xy: np.ndarray, size: float, meshes: tuple[str, ...]) -> Primitive:
    """One textured object resting on the ground plane z = 0 at ``xy``."""
    tex = [random_texture(rng, (2.0, 6.0))]
    kinds = ["box", "sphere", "cylinder", "cone", "icosphere"] + (["user"] * 5 if meshes else [])
    kind = str(rng.choice(kinds))
    if kind == "box":
        half = size * rng.uniform(0.25, 0.6, 3)
        return Box(tex, (float(xy[0]), float(xy[1]), float(half[2])), tuple(map(float, half)),
                   _rot_z(rng.uniform(0, 2 * np.pi)))
    if kind == "sphere":
        r = size * rng.uniform(0.3, 0.5)
        return Sphere(tex, (float(xy[0]), float(xy[1]), float(r)), float(r))
    if kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=size * rng.uniform(0.2, 0.4), height=size * rng.uniform(0.5, 1.2),
                                         sections=20)
    elif kind == "cone":
        mesh = trimesh.creation.cone(radius=size * rng.uniform(0.25, 0.45), height=size * rng.uniform(0.6, 1.2),
                                     sections=20)
    elif kind == "icosphere":
        mesh = trimesh.creation.icosphere(subdivisions=1, radius=size * rng.uniform(0.3, 0.5))
    else:
        mesh = _load_user_mesh(str(rng.choice(list(meshes)))).copy()
        mesh.apply_scale(size * rng.uniform(0.8, 1.4))
    rot = np.eye(4)
    rot[:3, :3] = np.array(_rot_z(rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.3)))
    mesh.apply_transform(rot)
    mesh.apply_translation([xy[0], xy[1], -mesh.bounds[0, 2]])
    return TriangleMesh.from_trimesh(mesh, tex)


def _intrinsics(rng: np.random.Generator, resolution: int, fov_deg: tuple[float, float]) -> np.ndarray:
    f = resolution / (2.0 * math.tan(math.radians(rng.uniform(*fov_deg)) / 2.0))
    return np.array([[f, 0, resolution / 2], [0, f, resolution / 2], [0, 0, 1]], dtype=np.float64)


def object_scene(
    rng: np.random.Generator, views: int, resolution: int, meshes: tuple[str, ...] = ()
) -> tuple[SceneSpec, torch.Tensor, torch.Tensor]:
    """1-3 objects on a textured ground, cameras orbiting them (azimuth spans 90-360 degrees, varied elevation)."""
    n = int(rng.integers(1, 4))
    size = rng.uniform(0.6, 1.0)
    angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(n) / n
    xy = (0.45 * size * (n > 1)) * np.stack([np.cos(angles), np.sin(angles)], 1)
    objects = [_random_object(rng, xy[i], size, meshes) for i in range(n)]
    ground = Plane([random_texture(rng, (1.0, 3.0))])
    scene = SceneSpec([ground, *objects], light_dir=_light(rng), ambient=float(rng.uniform(0.35, 0.6)))

    span = rng.uniform(np.pi / 2, 2 * np.pi)
    azimuth = rng.uniform(0, 2 * np.pi) + span * np.sort(rng.uniform(0, 1, views))
    elevation = np.radians(rng.uniform(8, 55, views))
    radius = size * rng.uniform(2.2, 3.4, views)
    target = np.array([0.0, 0.0, 0.35 * size]) + rng.normal(0, 0.05 * size, 3)
    eye = target + radius[:, None] * np.stack(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], 1
    )
    c2w = look_at(torch.tensor(eye), torch.tensor(target).expand(views, 3), torch.tensor(WORLD_UP))
    K = torch.tensor(_intrinsics(rng, resolution, (40, 60))).expand(views, 3, 3)
    return scene, c2w.float(), K.float().contiguous()


def room_scene(
    rng: np.random.Generator, views: int, resolution: int, meshes: tuple[str, ...] = ()
) -> tuple[SceneSpec, torch.Tensor, torch.Tensor]:
    """A textured box room with furniture-like boxes along the walls and a camera walking and turning inside."""
    half = np.array([rng.uniform(2.0, 3.5), rng.uniform(2.0, 3.5), rng.uniform(1.25, 1.6)])
    room = Box([random_texture(rng, (0.8, 2.5)) for _ in range(6)], (0.0, 0.0, float(half[2])), tuple(map(float, half)))
    furniture: list[Primitive] = []
    for _ in range(int(rng.integers(3, 8))):
        wall = int(rng.integers(0, 4))  # 0/1: x walls, 2/3: y walls
        axis, sign = wall // 2, 1.0 if wall % 2 else -1.0
        w, d, h = rng.uniform(0.4, 1.4), rng.uniform(0.25, 0.45), rng.uniform(0.2, 1.0)
        pos = np.zeros(2)
        pos[axis] = sign * (half[axis] - d - 0.05)
        pos[1 - axis] = rng.uniform(-half[1 - axis] + w, half[1 - axis] - w)
        angle = (0.0 if axis == 1 else np.pi / 2) + rng.normal(0, 0.1)
        if meshes and rng.uniform() < 0.3:
            furniture.append(_random_object(rng, pos, 2 * w, meshes))
        else:
            furniture.append(Box([random_texture(rng, (2.0, 6.0))], (float(pos[0]), float(pos[1]), float(h)),
                                 (float(w), float(d), float(h)), _rot_z(angle)))
    scene = SceneSpec([room, *furniture], light_dir=_light(rng), ambient=float(rng.uniform(0.5, 0.7)))

    margin = half[:2] - 1.3
    start = rng.uniform(-margin, margin)
    end = np.clip(start + rng.normal(0, 0.8, 2), -margin, margin)
    s = np.linspace(0, 1, views)
    yaw = rng.uniform(0, 2 * np.pi) + s * rng.uniform(-np.pi / 2, np.pi / 2)
    pitch = np.radians(rng.uniform(-15, 10)) + 0.0 * s
    height = rng.uniform(1.2, 1.7)
    eye = np.concatenate([start + s[:, None] * (end - start), np.full((views, 1), height)], 1)
    forward = np.stack([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)], 1)
    c2w = look_at(torch.tensor(eye), torch.tensor(eye + forward), torch.tensor(WORLD_UP))
    K = torch.tensor(_intrinsics(rng, resolution, (55, 75))).expand(views, 3, 3)
    return scene, c2w.float(), K.float().contiguous()


def _light(rng: np.random.Generator) -> tuple[float, float, float]:
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(30), np.radians(75))
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


def build_scene(
    kind: str, seed: int, index: int, views: int, resolution: int, split: str = "train", meshes: tuple[str, ...] = ()
) -> tuple[SceneSpec, torch.Tensor, torch.Tensor]:
    """The scene and cameras (``c2w [V,4,4]``, ``K [V,3,3]`` for a ``resolution``-square image) of one index."""
    rng = scene_rng(seed, index, kind, split)
    make = object_scene if kind == "object" else room_scene
    return make(rng, views, resolution, meshes)


def generate_scene(
    kind: str,
    seed: int,
    index: int,
    views: int = 8,
    resolution: int = 64,
    supersample: int = 2,
    split: str = "train",
    meshes: tuple[str, ...] = (),
) -> RenderedScene:
    """Build and render one scene into arrays (deterministic in its arguments)."""
    scene, c2w, K = build_scene(kind, seed, index, views, resolution, split, meshes)
    rgb, depth = render_views(scene, c2w, K, resolution, resolution, supersample)
    return RenderedScene(
        scene_id=f"{split}-{kind}-{seed}-{index:07d}",
        rgb=(rgb * 255.0 + 0.5).to(torch.uint8).numpy(),
        depth=depth.numpy().astype(np.float32),
        K=K.numpy().astype(np.float32),
        c2w=c2w.numpy().astype(np.float32),
    )
