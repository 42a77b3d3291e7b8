"""``cameo-train reproduce``: train a config and every config its warm start depends on, in order.

The bundled model is several fine-tuning stages: each stage's config names the previous stage's export
(``<output_dir>/model``) in ``model.init_from``. Reproducing it by hand means running the stages in the right order;
:func:`warm_start_chain` finds that order from the configs themselves, and :func:`reproduce` trains each stage whose
export is missing (resuming one that was interrupted), then the last stage's one-photo depth network, and exports
the result. Each stage runs as its own ``cameo-train --config NAME --resume`` process, exactly the command a user
would type, so a stage behaves as it does alone and an interrupted reproduction continues where it stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cameo.model_folder import has_depth_net
from cameo.train.checkpoint import TRAINER_STATE, latest_checkpoint
from cameo.train.config import CONFIG_DIR, ConfigError, TrainConfig, load_config, resolve_config_path
from cameo.train.loop import EXPORT


@dataclass(frozen=True)
class Stage:
    """One config of a chain: where it was read from and what it says."""

    path: Path
    cfg: TrainConfig

    @property
    def export(self) -> Path:
        return Path(self.cfg.output_dir) / EXPORT


def _candidates(first: Path) -> list[Path]:
    """Configs that may produce a warm start: the shipped ones and the YAML files beside ``first``."""
    folders = dict.fromkeys([CONFIG_DIR.resolve(), first.resolve().parent])
    return [p for folder in folders for p in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])]


def warm_start_chain(name_or_path: str) -> list[Stage]:
    """The stages that build ``name_or_path``'s model, first to last: each one's ``model.init_from`` is the export
    of the stage before it; the first starts from a model folder no candidate config produces (a shipped model, a
    pretrained checkpoint) or from scratch."""
    last = resolve_config_path(name_or_path)
    producers: dict[Path, Stage] = {}
    for path in _candidates(last):
        try:
            stage = Stage(path, load_config(str(path)))
        except ConfigError:
            continue  # a YAML file beside the config that is not a training config
        producers.setdefault(stage.export.resolve(), stage)
    chain = [Stage(last, load_config(str(last)))]
    while chain[0].cfg.model.init_from:
        producer = producers.get(Path(chain[0].cfg.model.init_from).resolve())
        if producer is None:
            break
        if any(stage.path.resolve() == producer.path.resolve() for stage in chain):
            raise ConfigError(f"{producer.path}: the warm-start chain of {last} loops back to it")
        chain.insert(0, producer)
    start = chain[0].cfg.model.init_from
    if start and not Path(start).is_dir():
        raise ConfigError(f"{chain[0].path}: model.init_from {start!r} is neither a model folder nor the export of a "
                          f"config in {CONFIG_DIR} or beside {last}")
    return chain


def is_trained(stage: Stage) -> bool:
    """Whether the stage's run reached its last step and exported it (a run exports only when it finishes)."""
    checkpoint = latest_checkpoint(Path(stage.cfg.output_dir))
    if checkpoint is None or not (stage.export / "cameo_model.json").is_file():
        return False
    return json.loads((checkpoint / TRAINER_STATE).read_text())["step"] >= stage.cfg.optim.max_steps


class StageFailed(RuntimeError):
    """A ``cameo-train`` process of the reproduction exited with an error."""


def _run(args: list[str]) -> None:
    """``cameo-train ARGS`` in its own process; a failed stage stops the reproduction with its exit status."""
    print("cameo-train " + " ".join(args), file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "cameo.train", *args])
    if done.returncode != 0:
        raise StageFailed(f"`cameo-train {' '.join(args)}` failed (exit status {done.returncode}); rerun "
                           f"`cameo-train reproduce` to continue from its last checkpoint")


def reproduce(name_or_path: str, out: str | None = None, half: bool = False) -> Path:
    """Train every stage of ``name_or_path``'s warm-start chain that is not trained yet, then the last stage's
    depth network when its config asks for one (``depth_net.steps > 0``) and it is missing; export the last
    stage to ``out`` (default: its ``<output_dir>/model``, already written by its training)."""
    chain = warm_start_chain(name_or_path)
    for number, stage in enumerate(chain, 1):
        if is_trained(stage):
            print(f"stage {number}/{len(chain)} {stage.cfg.name}: trained ({stage.export})", file=sys.stderr)
            continue
        print(f"stage {number}/{len(chain)} {stage.cfg.name}", file=sys.stderr)
        _run(["--config", str(stage.path), "--resume"])
    last = chain[-1]
    if last.cfg.depth_net.steps > 0 and not has_depth_net(last.cfg.output_dir):
        _run(["depth", "--config", str(last.path), "--resume"])
    if out is None and not half and not _depth_missing(last):
        return last.export
    export = ["export", "--config", str(last.path)] + (["--out", out] if out else []) + (["--half"] if half else [])
    _run(export)
    return Path(out) if out else last.export


def _depth_missing(stage: Stage) -> bool:
    """The run has a depth network its export does not carry yet (trained after the diffusion stage exported)."""
    return has_depth_net(stage.cfg.output_dir) and not has_depth_net(stage.export)
