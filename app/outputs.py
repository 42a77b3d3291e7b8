"""What the app hands back besides the pipeline's own files: a zip of the views and a viser viewer."""

from __future__ import annotations

import socket
import zipfile
from pathlib import Path

from cameo.atomic import atomic_path
from recon.pipeline import VIEWS_JSON, ReconResult
from recon.viewer import ViewerSession, launch_viewer, result_cameras


def zip_views(result: ReconResult, path: Path) -> Path:
    """``path`` (.zip) holding ``frames/NNNN.png``, ``transforms.json`` (nerfstudio layout) and ``views.json``,
    written atomically."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(result.transforms, "transforms.json")  # stored, not deflated: PNGs are already compressed
        if (result.workdir / VIEWS_JSON).is_file():
            zf.write(result.workdir / VIEWS_JSON, VIEWS_JSON)
        for frame in result.frames:
            zf.write(frame, f"frames/{frame.name}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_viewer(result: ReconResult, host: str = "127.0.0.1") -> ViewerSession:
    """A viser server on a free port showing the splats, the input cameras with their images and the path cameras,
    opening at the first input camera."""
    return launch_viewer(result.splats, result_cameras(result), host=host, port=free_port(host), verbose=False)
