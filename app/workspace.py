"""Per-session temporary folders (and viewers) that disappear when the session ends or sits idle too long.

Each browser session (gradio's ``session_hash``) gets one folder under the app's root temp folder; a new run
replaces the previous run's files and viewer. Gradio copies the files it serves into its own cache, so removing
a run folder never breaks what a page already shows (that cache is cleaned by ``Blocks(delete_cache=...)``).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol


class Stoppable(Protocol):
    def stop(self) -> None: ...


class Workspace:
    """One session's folder and its running viewer (if any)."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        self.viewer: Stoppable | None = None
        self.last_used = time.monotonic()
        self.busy = False  # a run is in progress: never expire it mid-run
        self._runs = 0

    def new_run(self) -> Path:
        """A fresh folder for the next run; the previous run's files and viewer are dropped."""
        self.stop_viewer()
        for old in self.dir.glob("run-*"):
            shutil.rmtree(old, ignore_errors=True)
        self._runs += 1
        run = self.dir / f"run-{self._runs:03d}"
        run.mkdir()
        self.last_used = time.monotonic()
        return run

    @contextmanager
    def in_use(self) -> Iterator[Workspace]:
        """Mark the workspace busy for a run (the sweeper skips it) and used when the run ends."""
        self.busy = True
        try:
            yield self
        finally:
            self.busy = False
            self.last_used = time.monotonic()

    def stop_viewer(self) -> None:
        if self.viewer is not None:
            self.viewer.stop()
            self.viewer = None

    def close(self) -> None:
        """Stop the viewer and remove the folder."""
        self.stop_viewer()
        shutil.rmtree(self.dir, ignore_errors=True)


class Workspaces:
    """Thread-safe ``session_hash -> Workspace`` map under one root temp folder, with idle expiry."""

    def __init__(self, ttl_seconds: float, root: Path | None = None) -> None:
        self.ttl = ttl_seconds
        self.root = Path(tempfile.mkdtemp(prefix="cameo-app-", dir=root))
        self._sessions: dict[str, Workspace] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def get(self, session: str) -> Workspace:
        """The session's workspace (created on first use), marked as used now."""
        with self._lock:
            ws = self._sessions.get(session)
            if ws is None:
                ws = self._sessions[session] = Workspace(self.root)
            ws.last_used = time.monotonic()
            return ws

    def close(self, session: str) -> None:
        """End a session: stop its viewer and remove its folder (no-op for unknown sessions)."""
        with self._lock:
            ws = self._sessions.pop(session, None)
        if ws is not None:
            ws.close()

    def sweep(self) -> list[str]:
        """Close sessions idle for longer than the TTL; returns their ids."""
        now = time.monotonic()
        with self._lock:
            stale = [s for s, ws in self._sessions.items() if not ws.busy and now - ws.last_used > self.ttl]
        for session in stale:
            self.close(session)
        return stale

    def start_sweeper(self, every_seconds: float = 60.0) -> None:
        """Sweep in a daemon thread until :meth:`shutdown`."""
        def loop() -> None:
            while not self._stopped.wait(every_seconds):
                self.sweep()

        threading.Thread(target=loop, name="cameo-app-sweeper", daemon=True).start()

    def shutdown(self) -> None:
        """Close every session and remove the root folder."""
        self._stopped.set()
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            self.close(session)
        shutil.rmtree(self.root, ignore_errors=True)
