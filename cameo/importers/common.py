"""What every importer shares: choosing the 1-2 frames of a scene among a file's many."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cameo.scene import Frame, SceneError


def select_frames(frames: list[Frame], indices: Sequence[int] | None, source: Path) -> list[Frame]:
    """``frames[indices]``; without ``indices`` the file itself must hold 1 or 2 frames."""
    if indices is None:
        if len(frames) > 2:
            raise SceneError(source, "frames", f"has {len(frames)} frames; choose 1 or 2 with indices=[i, j]")
        return frames
    for i in indices:
        if not -len(frames) <= i < len(frames):
            raise SceneError(source, "frames", f"index {i} out of range (0..{len(frames) - 1})")
    return [frames[i] for i in indices]

