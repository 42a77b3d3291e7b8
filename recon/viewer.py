"""Interactive splat viewer on viser: the Gaussians, the input cameras (with their images) and the path cameras.

``launch_viewer`` is what the app and ``cameo-recon --view`` call; ``main`` is the ``cameo-view splat.ply`` entry
point, which also reads the views folder ``cameo-recon`` wrote next to the ply (``<stem>_views/``: frames,
``transforms.json``, ``views.json``) to draw the cameras. The view opens at the first input camera (where the photo
was taken). The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import viser
import viser.transforms as vtf
from PIL import Image

from recon.rasterize import covariances
from cameo.importers import read_nerfstudio
from cameo.scene import SceneError
from recon.splats import Splats, load_ply

if TYPE_CHECKING:
    from recon.pipeline import ReconResult

VIEWS_JSON = "views.json"  # written by recon.pipeline next to transforms.json
INPUT_COLOR = (20, 120, 255)
PATH_COLOR = (255, 120, 20)


@dataclass
class CameraGroup:
    """Cameras to draw as frustums: OpenCV ``c2w [V,4,4]``, ``K [V,3,3]`` for images of ``width`` x ``height``."""

    name: str
    K: torch.Tensor
    c2w: torch.Tensor
    width: int
    height: int
    images: torch.Tensor | None = None  # [V,3,H,W] in [0,1], shown inside the frustums
    color: tuple[int, int, int] = (255, 120, 20)


@dataclass
class ViewerSession:
    """A running viewer: the viser server and the scene handles it created."""

    server: viser.ViserServer
    url: str
    splats: viser.GaussianSplatHandle
    frustums: list[viser.CameraFrustumHandle] = field(default_factory=list)

    def stop(self) -> None:
        """Shut the server down."""
        self.server.stop()


def launch_viewer(
    splats: Splats | str | Path, cameras: Sequence[CameraGroup] = (), host: str = "127.0.0.1", port: int = 8080,
    verbose: bool = True,
) -> ViewerSession:
    """Start a viser server showing ``splats`` (a :class:`Splats` or a .ply path) and camera frustums.

    Returns immediately; the server runs in background threads until :meth:`ViewerSession.stop`.
    """
    if not isinstance(splats, Splats):
        splats = load_ply(splats)
    server = viser.ViserServer(host=host, port=port, verbose=False)
    all_c2w = [g.c2w for g in cameras]
    if all_c2w:  # OpenCV y points down in the image: the scene's up is the cameras' mean -y axis
        up = -torch.cat(all_c2w)[:, :3, 1].mean(0)
        if up.norm() > 1e-6:
            server.scene.set_up_direction(tuple(float(x) for x in up / up.norm()))
    handle = server.scene.add_gaussian_splats("/splats", **splat_arrays(splats))
    frustums = [h for group in cameras for h in _add_cameras(server, group, _frustum_scale(splats, group))]
    if cameras:
        _start_at(server, cameras[0], splats)
    url = f"http://{host}:{server.get_port()}"
    if verbose:
        print(f"viewer running at {url}", flush=True)
    return ViewerSession(server=server, url=url, splats=handle, frustums=frustums)


def splat_arrays(splats: Splats) -> dict[str, np.ndarray]:
    """viser's splat arrays: centres, 3x3 covariances, DC colours and opacities (view-dependent SH is dropped)."""
    s = splats.detach()
    covars = covariances(s.quats, torch.exp(s.scales))
    return {
        "centers": s.means.float().cpu().numpy(),
        "covariances": covars.float().cpu().numpy(),
        "rgbs": s.rgb().float().cpu().numpy(),
        "opacities": torch.sigmoid(s.opacities).float().cpu().numpy()[:, None],
    }


def _frustum_scale(splats: Splats, group: CameraGroup) -> float:
    """Frustum size: a tenth of the median camera distance to the splats' centre."""
    centre = splats.means.detach().median(0).values.cpu()
    dist = (group.c2w[:, :3, 3].cpu() - centre).norm(dim=-1).median().item()
    return 0.1 * dist if math.isfinite(dist) and dist > 0 else 0.1


def _add_cameras(server: viser.ViserServer, group: CameraGroup, scale: float) -> list[viser.CameraFrustumHandle]:
    handles = []
    for i in range(group.c2w.shape[0]):
        c2w = group.c2w[i].double().cpu().numpy()
        fy = float(group.K[i, 1, 1])
        image = None
        if group.images is not None:
            image = (group.images[i].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        handles.append(server.scene.add_camera_frustum(
            f"/{group.name}/{i:03d}", fov=2 * math.atan(group.height / (2 * fy)), aspect=group.width / group.height,
            scale=scale, color=group.color, image=image, wxyz=vtf.SO3.from_matrix(c2w[:3, :3]).wxyz,
            position=c2w[:3, 3],
        ))
    return handles


def _start_at(server: viser.ViserServer, group: CameraGroup, splats: Splats) -> None:
    """Open new clients at the group's first camera, looking along its optical axis, with its field of view."""
    c2w = group.c2w[0].double().cpu()
    centre = splats.means.detach().median(0).values.double().cpu()
    depth = float((centre - c2w[:3, 3]) @ c2w[:3, 2])  # distance to the splats along the axis (1 if behind)
    server.initial_camera.position = tuple(float(x) for x in c2w[:3, 3])
    server.initial_camera.look_at = tuple(float(x) for x in c2w[:3, 3] + c2w[:3, 2] * (depth if depth > 0 else 1.0))
    server.initial_camera.up = tuple(float(x) for x in -c2w[:3, 1])
    server.initial_camera.fov = 2 * math.atan(group.height / (2 * float(group.K[0, 1, 1])))


def result_cameras(result: ReconResult) -> list[CameraGroup]:
    """The input cameras (with their images) and the path cameras of a finished reconstruction."""
    idx = list(result.input_indices)
    height, width = result.images[idx[0]].shape[-2:]
    groups = [CameraGroup("inputs", result.K[idx], result.c2w[idx], int(width), int(height),
                          torch.stack([result.images[i] for i in idx]), INPUT_COLOR)]
    fly = result.flythrough_cameras
    if fly is not None:
        groups.append(CameraGroup("path", fly.K, fly.c2w, fly.width, fly.height, color=PATH_COLOR))
    return groups


def views_folder_cameras(ply: Path) -> list[CameraGroup]:
    """Input cameras (with their images) and path cameras from the ``<stem>_views/`` folder ``cameo-recon`` writes
    next to ``ply``; empty when there is none (any 3DGS ply can be viewed)."""
    folder = ply.with_name(f"{ply.stem}_views")
    meta_file, transforms = folder / VIEWS_JSON, folder / "transforms.json"
    if not (meta_file.is_file() and transforms.is_file()):
        return []
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        frames = read_nerfstudio(transforms)
        inputs = [frames[i] for i in meta["input_frames"]]
        fly = meta["flythrough"]
        path = CameraGroup("path", torch.tensor(fly["K"]), torch.tensor(fly["c2w"]), int(fly["width"]),
                           int(fly["height"]), color=PATH_COLOR)
    except (OSError, ValueError, KeyError, IndexError, TypeError, SceneError) as exc:
        raise ValueError(f"{folder}: unreadable views folder ({exc})") from exc
    images = torch.stack([torch.from_numpy(np.array(Image.open(f.image).convert("RGB"))) for f in inputs])
    group = CameraGroup("inputs", torch.from_numpy(np.stack([f.K for f in inputs])).float(),
                        torch.from_numpy(np.stack([f.c2w for f in inputs])).float(), inputs[0].width,
                        inputs[0].height, images.permute(0, 3, 1, 2).float() / 255, INPUT_COLOR)
    return [group, path]


def main(argv: Sequence[str] | None = None) -> int:
    """``cameo-view splat.ply``: serve a 3DGS PLY in the browser until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="cameo-view", description="Show a 3D Gaussian-splat .ply in the browser (viser), with the input and "
                                       "path cameras of the views folder cameo-recon writes next to it "
                                       "(<stem>_views/), opening at the first input camera. Open the printed URL; "
                                       "stop with Ctrl-C.")
    parser.add_argument("ply", type=Path, help="standard 3DGS PLY (x,y,z, f_dc_*, opacity, scale_*, rot_*)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: localhost only)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` / service managers stop it like Ctrl-C
    session = None
    try:
        session = launch_viewer(args.ply, views_folder_cameras(args.ply), host=args.host, port=args.port)
        while True:
            time.sleep(1.0)
    except (FileNotFoundError, ValueError) as exc:
        print(f"cameo-view: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopping viewer", flush=True)
    finally:
        if session is not None:
            session.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
