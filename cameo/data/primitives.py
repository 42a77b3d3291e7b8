"""Exact ray casting of scene primitives: infinite planes, spheres, oriented boxes and triangle meshes.

Analytic intersections give depth exact to float precision; meshes (trimesh primitives or user files) use a
batched Moller-Trumbore test restricted to rays that hit the mesh bounding box. Hand-written because trimesh's ray
module needs the optional embree backend to be fast and returns no per-ray nearest hit in one vectorised call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh

from .textures import SolidTexture

EPS = 1e-5


@dataclass
class Hit:
    """Nearest hit per ray: distance ``t [R]`` (inf = miss), unit normal ``[R, 3]`` and face id ``[R]``."""

    t: torch.Tensor
    normal: torch.Tensor
    face: torch.Tensor


def _miss(n: int, dtype: torch.dtype) -> Hit:
    return Hit(
        torch.full((n,), float("inf"), dtype=dtype),
        torch.zeros(n, 3, dtype=dtype),
        torch.zeros(n, dtype=torch.int64),
    )


@dataclass
class Primitive:
    """Base class: a shape with one material per face id (``materials[face % len(materials)]``)."""

    materials: list[SolidTexture]

    def intersect(self, origins: torch.Tensor, dirs: torch.Tensor) -> Hit:
        raise NotImplementedError


@dataclass
class Plane(Primitive):
    """Infinite plane through ``point`` with unit ``normal``."""

    point: tuple[float, float, float] = (0.0, 0.0, 0.0)
    normal: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def intersect(self, origins: torch.Tensor, dirs: torch.Tensor) -> Hit:
        n = torch.tensor(self.normal, dtype=dirs.dtype)
        p0 = torch.tensor(self.point, dtype=dirs.dtype)
        denom = dirs @ n
        t = ((p0 - origins) @ n) / denom
        t = torch.where((t > EPS) & (denom.abs() > 1e-9), t, torch.full_like(t, float("inf")))
        return Hit(t, n.expand(len(t), 3), torch.zeros(len(t), dtype=torch.int64))


@dataclass
class Sphere(Primitive):
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 1.0

    def intersect(self, origins: torch.Tensor, dirs: torch.Tensor) -> Hit:
        c = torch.tensor(self.center, dtype=dirs.dtype)
        oc = origins - c
        b = (oc * dirs).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - self.radius**2)
        sq = disc.clamp_min(0).sqrt()
        t0, t1 = -b - sq, -b + sq
        t = torch.where(t0 > EPS, t0, t1)
        t = torch.where((disc >= 0) & (t > EPS), t, torch.full_like(t, float("inf")))
        normal = (oc + t[:, None] * dirs) / self.radius
        return Hit(t, torch.nan_to_num(normal), torch.zeros(len(t), dtype=torch.int64))


@dataclass
class Box(Primitive):
    """Oriented box: ``rotation`` (3x3, local -> world) about ``center``; seen from inside it acts as a room.

    Face ids are 0..5 = (-x, +x, -y, +y, -z, +z) in the box frame, so a room can texture each wall differently.
    """

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    half_extents: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rotation: tuple[tuple[float, float, float], ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))

    def intersect(self, origins: torch.Tensor, dirs: torch.Tensor) -> Hit:
        R = torch.tensor(self.rotation, dtype=dirs.dtype)
        h = torch.tensor(self.half_extents, dtype=dirs.dtype)
        o = (origins - torch.tensor(self.center, dtype=dirs.dtype)) @ R  # world -> local (R^T x)
        d = dirs @ R
        inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
        t1, t2 = (-h - o) * inv, (h - o) * inv
        tnear = torch.minimum(t1, t2).amax(-1)
        tfar = torch.maximum(t1, t2).amin(-1)
        t = torch.where(tnear > EPS, tnear, tfar)
        t = torch.where((tfar >= tnear) & (t > EPS), t, torch.full_like(t, float("inf")))
        local = o + torch.nan_to_num(t[:, None] * d, posinf=0.0, neginf=0.0)
        axis = (local.abs() / h).argmax(-1)
        sign = torch.sign(local.gather(1, axis[:, None])).squeeze(1)
        normal_local = torch.zeros_like(o)
        normal_local.scatter_(1, axis[:, None], sign[:, None])
        face = 2 * axis + (sign > 0).to(torch.int64)
        return Hit(t, normal_local @ R.T, face)


@dataclass
class TriangleMesh(Primitive):
    """Triangle mesh (from trimesh) with flat face normals; one material for the whole mesh."""

    vertices: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))

    @classmethod
    def from_trimesh(cls, mesh: trimesh.Trimesh, materials: list[SolidTexture]) -> "TriangleMesh":
        return cls(materials=materials, vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces))

    def intersect(self, origins: torch.Tensor, dirs: torch.Tensor, chunk: int = 1 << 21) -> Hit:
        hit = _miss(len(origins), dirs.dtype)
        v = torch.as_tensor(self.vertices, dtype=dirs.dtype)
        lo, hi = v.amin(0), v.amax(0)
        inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
        t1, t2 = (lo - origins) * inv, (hi - origins) * inv
        near, far = torch.minimum(t1, t2).amax(-1), torch.maximum(t1, t2).amin(-1)
        rays = torch.nonzero((far >= near) & (far > EPS)).squeeze(1)
        if len(rays) == 0:
            return hit
        tri = v[torch.as_tensor(self.faces, dtype=torch.int64)]  # [T, 3, 3]
        v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        # Plane hit then barycentrics, written as [rays, 3] x [3, triangles] matmuls (much faster than per-pair
        # cross products): p - v0 = u e1 + w e2 with u = (p - v0).(e2 x n)/|n|^2, w = (p - v0).(n x e1)/|n|^2.
        n = torch.cross(e1, e2, dim=-1)
        nn = (n * n).sum(-1).clamp_min(1e-30)
        a_u = torch.cross(e2, n, dim=-1) / nn[:, None]
        a_w = torch.cross(n, e1, dim=-1) / nn[:, None]
        n_v0, u_v0, w_v0 = (n * v0).sum(-1), (a_u * v0).sum(-1), (a_w * v0).sum(-1)
        unit_n = n / nn.sqrt()[:, None]
        step = max(1, chunk // len(tri))
        for s in range(0, len(rays), step):  # chunks bound the [rays, triangles] temporaries
            r = rays[s : s + step]
            o, d = origins[r], dirs[r]
            dn = d @ n.T
            t = (n_v0 - o @ n.T) / torch.where(dn.abs() < 1e-12, torch.full_like(dn, 1e-12), dn)
            u = torch.addmm(-u_v0, o, a_u.T) + t * (d @ a_u.T)
            w = torch.addmm(-w_v0, o, a_w.T) + t * (d @ a_w.T)
            ok = (u >= 0) & (w >= 0) & (u + w <= 1) & (t > EPS)
            tmin, arg = torch.where(ok, t, torch.full_like(t, float("inf"))).min(-1)
            hit.t[r] = tmin
            hit.normal[r] = unit_n[arg]
        return hit
