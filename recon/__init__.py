"""3D Gaussian-splat reconstruction: fit splats to posed views, export/load 3DGS PLY, render, view.

Public API: :func:`fit_gaussians` (+ :class:`FitConfig`), :class:`Splats`, :func:`render`, :func:`export_ply`,
:func:`load_ply`, :func:`rasterization` and :func:`launch_viewer` (imported on first use: it pulls in viser).
"""

from recon.fit import FitConfig, fit_gaussians
from recon.rasterize import rasterization
from recon.splats import Splats, export_ply, load_ply, render

__all__ = ["FitConfig", "Splats", "export_ply", "fit_gaussians", "launch_viewer", "load_ply", "rasterization",
           "render"]


def __getattr__(name: str):
    if name == "launch_viewer":
        from recon.viewer import launch_viewer

        return launch_viewer
    raise AttributeError(f"module 'recon' has no attribute {name!r}")
