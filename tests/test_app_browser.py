"""End to end in headless Chromium: `python -m app.cli` serves the page, a browser runs a bundled example.

Needs the Debian package ``chromium`` (or $CHROMIUM), ``node`` and the npm package ``playwright-core`` reachable
through $NODE_PATH (e.g. ``npm i playwright-core`` in a folder, NODE_PATH=<folder>/node_modules); skipped
otherwise. The page's screenshot is written to $CAMEO_APP_SCREENSHOT when set (``docs/app.png`` is made so).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.outputs import free_port
from cameo.data.demo import make_demo_scenes
from tests.pipeline_helpers import write_tiny_model

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("test_app_browser_driver.cjs")
LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0"}
# Runs the real entry point with an audit hook that logs every host the server process resolves or connects to.
SERVER = """
import sys
log = open(sys.argv[1], "w", buffering=1)
def hook(event, args):
    if event == "socket.getaddrinfo" or (event == "socket.connect" and isinstance(args[1], tuple)):
        log.write(str(args[0] if event == "socket.getaddrinfo" else args[1][0]) + "\\n")
sys.addaudithook(hook)
from app.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _browser_tools() -> tuple[str, str]:
    """Chromium and node paths, or skip saying what is missing."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    node = shutil.which("node")
    if not chromium or not os.access(chromium, os.X_OK):
        pytest.skip("chromium not installed (Debian: apt-get install -y chromium, or set CHROMIUM)")
    if not node:
        pytest.skip("node not installed (Debian: apt-get install -y nodejs npm)")
    found = subprocess.run([node, "-e", "require.resolve('playwright-core')"], capture_output=True)
    if found.returncode != 0:
        pytest.skip("playwright-core not found by node: `npm i playwright-core` in a folder and set "
                    "NODE_PATH=<folder>/node_modules")
    return chromium, node


def _wait_for_page(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"cameo-app exited early with code {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"cameo-app did not serve {url} within {timeout:.0f} s")


def test_browser_runs_a_bundled_example(tmp_path):
    chromium, node = _browser_tools()
    model = write_tiny_model(tmp_path / "model")
    make_demo_scenes(tmp_path / "demo", count=1, kinds=("object",), views=4, resolution=64)
    port = free_port()
    hosts_log = tmp_path / "hosts.txt"
    args = ["--port", str(port), "--checkpoint", str(model), "--examples", str(tmp_path / "demo"), "--device", "cpu",
            "--threads", "2", "--views", "4", "--steps", "2", "--fit-iterations", "3", "--fit-points", "200"]
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(hosts_log), *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    screenshot = tmp_path / "app.png"
    try:
        _wait_for_page(f"http://127.0.0.1:{port}/", server)
        driver = subprocess.run([node, str(DRIVER), f"http://127.0.0.1:{port}/", str(screenshot),
                                 str(tmp_path / "chromium-profile")],
                                env={**os.environ, "CHROMIUM": chromium}, capture_output=True, text=True, timeout=300)
    finally:
        server.send_signal(signal.SIGTERM)
        log, _ = server.communicate(timeout=60)
    assert driver.returncode == 0, driver.stderr
    result = json.loads(driver.stdout.strip().splitlines()[-1])
    assert "error" not in result, (result, log[-3000:])
    assert result["status"].startswith("Done: 4 generated views"), result
    assert result["gallery_images"] == 4 and result["splat_canvases"] >= 1
    assert result["viewer_link"].startswith("http://127.0.0.1:")
    assert result["external"] == []  # the page itself loaded nothing from outside this machine
    assert set(hosts_log.read_text().split()) <= LOOPBACK  # neither did the server process
    assert server.returncode == 0 and not list(tmp_path.glob("cameo-app-*"))  # clean exit, session files gone
    assert 0 < screenshot.stat().st_size < 1_500_000
    if os.environ.get("CAMEO_APP_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["CAMEO_APP_SCREENSHOT"])
