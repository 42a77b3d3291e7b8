"""cameo-train reproduce: the warm-start chain behind a config, trained stage by stage in order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cameo.train import chain
from cameo.train.checkpoint import latest_checkpoint
from cameo.train.cli import main
from cameo.train.config import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_the_bundled_models_chain_is_its_five_stages_from_the_shipped_cat3d_model(monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # the configs' run folders are relative to the working directory
    stages = chain.warm_start_chain("demo-cpu-proxy")
    assert [s.cfg.name for s in stages] == ["demo-cpu", "demo-cpu-refine", "demo-cpu-covisible",
                                            "demo-cpu-extrapolate", "demo-cpu-proxy"]
    assert (REPO / stages[0].cfg.model.init_from / "unet" / "config.json").is_file()  # from a shipped model
    assert [s.cfg.name for s in chain.warm_start_chain("demo-cpu")] == ["demo-cpu"]


def _config(folder: Path, name: str, init_from: Path | None, depth_steps: int) -> Path:
    cfg = {
        "name": name, "seed": 1, "output_dir": str(folder / name), "checkpoint_every": 1, "log_every": 1,
        "val_every": 0,
        "data": {"path": str(folder / "data"), "scenes": 3, "scene_views": 4, "resolution": 16, "val_scenes": 1},
        "model": {"preset": "tiny", "init_from": str(init_from) if init_from else None},
        "optim": {"batch_size": 1, "max_steps": 2, "lr": 1e-3},
        "cameo": {"enabled": True, "layer": 10},
        "depth_net": {"steps": depth_steps, "batch_size": 4, "widths": [8, 16]},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_loop_of_warm_starts_is_refused(tmp_path) -> None:
    _config(tmp_path, "a", tmp_path / "b" / "model", 0)
    last = _config(tmp_path, "b", tmp_path / "a" / "model", 0)
    with pytest.raises(ConfigError, match="loops back"):
        chain.warm_start_chain(str(last))


def test_a_chain_starting_from_a_missing_folder_names_the_config_and_field(tmp_path) -> None:
    last = _config(tmp_path, "b", tmp_path / "nowhere" / "model", 0)
    with pytest.raises(ConfigError, match=r"b\.yaml: model\.init_from .*nowhere"):
        chain.warm_start_chain(str(last))


def test_reproduce_trains_the_stages_in_order_then_skips_what_is_trained(tmp_path) -> None:
    torch.set_num_threads(1)
    _config(tmp_path, "first", None, 0)
    last = _config(tmp_path, "second", tmp_path / "first" / "model", 2)
    assert [s.cfg.name for s in chain.warm_start_chain(str(last))] == ["first", "second"]
    out = tmp_path / "shipped"
    assert main(["reproduce", "--config", str(last), "--out", str(out), "--half"]) == 0

    first, second = (latest_checkpoint(tmp_path / name) for name in ("first", "second"))
    assert first.name == second.name == "step-0000002"
    assert (tmp_path / "second" / "depth" / "config.json").is_file()  # the last stage's depth network
    assert (out / "depth" / "config.json").is_file() and (out / "cameo_model.json").is_file()
    weights = load_file(str(next((out / "unet").glob("*.safetensors"))))
    assert all(v.dtype == torch.float16 for v in weights.values() if v.is_floating_point())
    # in order: the first stage's export existed before the second stage's first checkpoint (its warm start)
    first_export = (tmp_path / "first" / "model" / "cameo_model.json").stat().st_mtime_ns
    assert first_export < min(p.stat().st_mtime_ns for p in (tmp_path / "second" / "checkpoints").glob("step-*"))
    trained = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "first" / "checkpoints").iterdir()}

    assert main(["reproduce", "--config", str(last), "--out", str(tmp_path / "again")]) == 0  # nothing to train
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "first" / "checkpoints").iterdir()} == trained
    assert latest_checkpoint(tmp_path / "second").name == "step-0000002"
    assert (tmp_path / "again" / "depth" / "config.json").is_file()


def test_a_failing_stage_stops_the_reproduction_with_exit_status_2(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()  # a folder, but no model in it: the stage's warm start fails in its process
    last = _config(tmp_path, "broken", tmp_path / "empty", 0)
    assert main(["reproduce", "--config", str(last)]) == 2
    assert "failed (exit status" in capsys.readouterr().err
    assert not (tmp_path / "broken" / "model").exists()


def test_reproduce_takes_no_field_overrides(tmp_path, capsys) -> None:
    last = _config(tmp_path, "only", None, 0)
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--config", str(last), "--optim.lr", "1"])
    assert exit_info.value.code == 2 and "as it is written" in capsys.readouterr().err
