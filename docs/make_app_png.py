"""Re-shoot ``docs/app.png``: the web demo running the bundled model on the first bundled example, in headless Chromium.

Needs what the browser test needs (Debian ``chromium``, ``node``, npm ``playwright-core`` on $NODE_PATH). Fewer views,
DDIM steps and fitting iterations than the defaults keep the run within the driver's 4-minute wait on 2 CPU cores.

    NODE_PATH=/tmp/cameo-ci-node/node_modules python docs/make_app_png.py
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from app.outputs import free_port

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "test_app_browser_driver.cjs"


def _wait(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the page answers (or the server dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"cameo-app exited early with code {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"cameo-app did not serve {url} within {timeout:.0f} s")


def main() -> int:
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not chromium or not shutil.which("node"):
        sys.exit("needs chromium and node (see the module docstring)")
    port = free_port()
    args = ["--port", str(port), "--device", "cpu", "--threads", "2", "--views", "14", "--steps", "10",
            "--fit-iterations", "150"]
    server = subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=REPO)
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "app.png"
        try:
            _wait(f"http://127.0.0.1:{port}/", server)
            driver = subprocess.run(["node", str(DRIVER), f"http://127.0.0.1:{port}/", str(shot), f"{tmp}/profile"],
                                    env={**os.environ, "CHROMIUM": chromium}, capture_output=True, text=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        if driver.returncode != 0 or not shot.is_file():
            sys.exit(f"the browser run failed: {driver.stderr[-2000:]}")
        shutil.copyfile(shot, REPO / "docs" / "app.png")
    print(f"wrote {REPO / 'docs' / 'app.png'}: {driver.stdout.strip().splitlines()[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
