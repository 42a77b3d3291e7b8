"""The bundled examples: demo scenes written by ``cameo-data demo`` (``cameo.data.demo``) under ``assets/demo/``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cameo.scene import SceneError, load_scene

DEFAULT_EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
MAX_EXAMPLES = 12

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One clickable example: its name, 1-2 input images and the scene.json holding their cameras."""

    name: str
    images: list[Path]
    scene_file: Path


def find_examples(folder: Path | None = DEFAULT_EXAMPLES_DIR, limit: int = MAX_EXAMPLES) -> list[Example]:
    """Valid demo scenes ``<folder>/*/scene.json`` in name order (invalid ones are skipped with a warning)."""
    if folder is None or not Path(folder).is_dir():
        return []
    examples = []
    for scene_file in sorted(Path(folder).glob("*/scene.json"))[:limit]:
        try:
            scene = load_scene(scene_file)
        except SceneError as err:
            log.warning("skipping example %s", err)
            continue
        examples.append(Example(scene_file.parent.name, [f.image for f in scene.frames], scene_file))
    return examples
