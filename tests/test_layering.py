"""Layers point one way: the inference side (the model, sampling, the model folder's owner, ``recon``, ``app``) never
imports training, and evaluation and training never import each other (they share what lies below them:
``cameo.diffusion``, ``cameo.image_metrics``, ``cameo.model``).

Two checks: what importing the inference entry points really loads (``sys.modules`` of a fresh interpreter), and
every import statement of the evaluation and training packages, function-level ones included (those load late)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INFERENCE = ["cameo.model", "cameo.sampling", "cameo.model_folder", "recon", "recon.pipeline", "recon.cli",
             "recon.viewer", "app", "app.ui", "app.cli"]


def _loaded_after_importing(modules: list[str]) -> list[str]:
    """Names in ``sys.modules`` after a fresh interpreter imports ``modules``."""
    code = (f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    # a fresh interpreter importing torch, diffusers and gradio: seconds, minutes on a heavily loaded machine
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=900)
    return json.loads(out.stdout.splitlines()[-1])


def _imports_of(package: str) -> dict[str, set[str]]:
    """Module file -> every module it imports (absolute names; relative imports resolved), at any depth."""
    found = {}
    for file in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        parts = list(file.relative_to(ROOT).parent.parts)  # the package the file is in
        names = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = parts[: len(parts) - node.level + 1] if node.level else []
                names.add(".".join(base + ([node.module] if node.module else [])))
        found[str(file.relative_to(ROOT))] = names
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_inference_entry_points_do_not_load_training():
    loaded = _loaded_after_importing(INFERENCE)
    assert "recon.pipeline" in loaded and "cameo.model_folder" in loaded
    assert not [m for m in loaded if _within(m, "cameo.train")]


def test_evaluation_and_training_do_not_import_each_other():
    for package, other in (("cameo.eval", "cameo.train"), ("cameo.train", "cameo.eval")):
        imports = _imports_of(package)
        assert imports, package
        crossing = {file: sorted(n for n in names if _within(n, other)) for file, names in imports.items()}
        assert not {file: names for file, names in crossing.items() if names}, f"{package} imports {other}"
