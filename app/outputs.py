"""What the app hands back besides the pipeline's own files: a zip of the views and a viser viewer."""

from __future__ import annotations

import socket
import zipfile
from pathlib import Path

from cameo.atomic import atomic_path
from recon.pipeline import ReconResult
from recon.viewer import CameraGroup, ViewerSession, launch_viewer

INPUT_COLOR = (20, 120, 255)
GENERATED_COLOR = (255, 120, 20)


def zip_views(result: ReconResult, path: Path) -> Path:
    """``path`` (.zip) holding ``frames/NNNN.png`` and ``transforms.json`` (nerfstudio layout), written atomically."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(result.transforms, "transforms.json")  # stored, not deflated: PNGs are already compressed
        for frame in result.frames:
            zf.write(frame, f"frames/{frame.name}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_viewer(result: ReconResult, host: str = "127.0.0.1") -> ViewerSession:
    """A viser server on a free port showing the splats and the input / generated cameras with their images."""
    size = result.images.shape[-1]
    groups = [
        CameraGroup(name, result.K[list(idx)], result.c2w[list(idx)], size, size, result.images[list(idx)], color)
        for name, idx, color in (("inputs", result.input_indices, INPUT_COLOR),
                                 ("generated", result.target_indices, GENERATED_COLOR))
        if idx
    ]
    return launch_viewer(result.splats, groups, host=host, port=free_port(host), verbose=False)
