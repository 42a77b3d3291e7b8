"""The viser viewer: serves its page on a free local port and holds the splats and camera frustums."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from cameo.cameras import look_at
from recon.splats import Splats, export_ply
from recon.viewer import CameraGroup, launch_viewer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _splats(n: int = 50) -> Splats:
    g = torch.Generator().manual_seed(0)
    return Splats(means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
                  scales=torch.full((n, 3), -3.0), opacities=torch.zeros(n), sh0=torch.zeros(n, 1, 3),
                  shN=torch.zeros(n, 0, 3))


def _get(url: str, timeout: float = 20.0) -> int:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def test_viewer_serves_page_and_holds_splats():
    splats = _splats()
    eyes = torch.tensor([[0.0, 0.0, -4.0], [1.0, 0.0, -4.0]])
    c2w = look_at(eyes, torch.zeros(2, 3), torch.tensor([0.0, -1.0, 0.0]))
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]]).expand(2, 3, 3)
    inputs = CameraGroup("inputs", K, c2w, 32, 24, images=torch.rand(2, 3, 24, 32))
    generated = CameraGroup("generated", K, c2w, 32, 24, color=(0, 0, 255))
    port = _free_port()
    session = launch_viewer(splats, [inputs, generated], port=port, verbose=False)
    try:
        assert session.url == f"http://127.0.0.1:{port}"
        assert _get(session.url) == 200
        assert session.splats.name == "/splats" and session.splats.centers.shape == (50, 3)
        assert len(session.frustums) == 4 and session.frustums[0].name == "/inputs/000"
    finally:
        session.stop()


def _default_sigint() -> None:
    """Child setup: a shell's background job (e.g. CI started with ``&``) inherits SIGINT ignored; Ctrl-C at a
    terminal reaches a foreground process with the default disposition, which this restores."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_viewer_cli_serves_ply_and_stops_on_interrupt(tmp_path, stop):
    path = export_ply(_splats(), tmp_path / "s.ply")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recon.viewer", str(path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_default_sigint)
    try:
        line = ""
        while "viewer running at" not in line:  # printed once the scene is loaded (after viser's banner)
            line = proc.stdout.readline()
            assert line, "viewer exited before printing its URL"
        assert f"http://127.0.0.1:{port}" in line
        assert _get(f"http://127.0.0.1:{port}", timeout=60) == 200
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "stopping viewer" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_viewer_cli_reports_missing_file(tmp_path):
    from recon.viewer import main

    assert main([str(tmp_path / "missing.ply"), "--port", str(_free_port())]) == 2
