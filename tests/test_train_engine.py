"""Training engine: exact resume, crash-safe checkpoints, NaN skipping, metrics log, 2-process DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState, PartialState

from cameo.train.checkpoint import latest_checkpoint
from cameo.train.loop import TrainingInterrupted, train
from tests.train_standins import WATCHDOG_MESSAGE, ToyScenes, ToyUNet, params_of, toy_builder, toy_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_accelerate():
    torch.set_num_threads(1)
    yield
    _reset()


def _reset():
    """Each run builds its own Accelerator; accelerate keeps process-wide singletons between them."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


def test_train_resume_matches_uninterrupted_run(tmp_path):
    straight = train(toy_config(tmp_path / "straight"), toy_builder())
    _reset()
    cfg = toy_config(tmp_path / "resumed")
    with pytest.raises(TrainingInterrupted):
        train(cfg, toy_builder(), stop_after=4)  # dies one step after the step-3 checkpoint
    assert latest_checkpoint(Path(cfg.output_dir)).name == "step-0000003"
    _reset()
    resumed = train(cfg, toy_builder(), resume=True)
    a, b = params_of(straight), params_of(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    init = ToyUNet()
    assert not torch.equal(a["unet.conv_in.weight"], init.conv_in.weight), "training did not change the weights"
    # metrics of steps 4.. were written twice (before the kill and after resume); the log keeps one copy each
    steps = [json.loads(line)["step"] for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_train_refuses_to_overwrite_and_survives_partial_checkpoint(tmp_path):
    cfg = toy_config(tmp_path / "run")
    with pytest.raises(TrainingInterrupted):
        train(cfg, toy_builder(), stop_after=3)
    _reset()
    with pytest.raises(FileExistsError):
        train(cfg, toy_builder())
    _reset()
    # a kill during the next save leaves a temporary folder; the previous checkpoint stays the valid one
    partial = Path(cfg.output_dir) / "checkpoints" / ".tmp-step-0000006"
    partial.mkdir()
    (partial / "optimizer.bin").write_bytes(b"truncated")
    assert latest_checkpoint(Path(cfg.output_dir)).name == "step-0000003"
    export = train(cfg, toy_builder(), resume=True)
    assert (export / "unet" / "config.json").is_file() and (export / "scheduler" / "scheduler_config.json").is_file()
    assert not partial.exists()
    saved = json.loads((Path(cfg.output_dir) / "checkpoints" / "step-0000006" / "trainer_state.json").read_text())
    assert saved["step"] == 6 and saved["micro_step"] == 6


def test_train_nan_loss_skips_the_step(tmp_path):
    cfg = toy_config(tmp_path / "nan")
    cfg.optim.max_steps = 1
    cfg.optim.batch_size = len(ToyScenes())  # every item in the one batch, including the poisoned one
    keep: dict = {}
    train(cfg, toy_builder(nan_item=5, keep=keep))
    initial = _initial_weights(cfg)
    for name, value in initial.state_dict().items():
        assert torch.equal(keep["parts"].unet.state_dict()[name], value), f"{name} changed by a NaN step"
    record = json.loads((Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["nan_skips"] == 1


def _initial_weights(cfg) -> ToyUNet:
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    return ToyUNet()


def test_train_nan_run_continues_with_finite_steps(tmp_path):
    cfg = toy_config(tmp_path / "nan2")
    cfg.optim.batch_size = 6  # two batches per epoch; item 5 is poisoned once per epoch
    train(cfg, toy_builder(nan_item=5))
    records = [json.loads(x) for x in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["nan_skips"] == 3  # one poisoned batch per epoch of 2 steps, 6 steps
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)
    assert all(torch.isfinite(v).all() for v in params_of(Path(cfg.output_dir) / "model").values())


def test_train_writes_loss_terms_and_scheduler(tmp_path):
    cfg = toy_config(tmp_path / "log")
    cfg.diffusion.prediction_type = "v_prediction"
    export = train(cfg, toy_builder())
    record = json.loads((Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "loss", "loss_denoise", "loss_cameo", "lr", "steps_per_s", "nan_skips"} <= record.keys()
    expected = record["loss_denoise"] + cfg.cameo.weight * record["loss_cameo"]
    assert record["loss"] == pytest.approx(expected, rel=1e-5)
    from diffusers import DDPMScheduler

    assert DDPMScheduler.from_pretrained(export / "scheduler").config.prediction_type == "v_prediction"


def _run_two_processes(out: Path) -> subprocess.CompletedProcess:
    """``tests.train_standins`` under torchrun with 2 gloo processes writing to ``out``."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tests.train_standins", str(out)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_train_two_cpu_processes_keep_identical_parameters(tmp_path):
    """gloo DDP via torchrun: gradients are averaged, and a NaN on one rank skips the step on both."""
    done = _run_two_processes(tmp_path)
    if done.returncode != 0 and WATCHDOG_MESSAGE in done.stderr:
        # two CI runs in ~40 hung once each after the last step (gloo teardown, never reproduced in 37 local runs):
        # one retry on a fresh run folder, the stacks reported, so a hang that recurs still fails
        warnings.warn(f"the two-process run hung and was retried; its stacks:\n{done.stderr[-6000:]}")
        shutil.rmtree(tmp_path)
        tmp_path.mkdir()
        done = _run_two_processes(tmp_path)
    assert done.returncode == 0, done.stderr[-6000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert int(rank0["world_size"]) == 2, "the processes did not join one process group"
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    init = _initial_weights(toy_config(tmp_path))
    assert not torch.equal(rank0["unet.conv_in.weight"], init.conv_in.weight)
    assert latest_checkpoint(tmp_path / "run").name == "step-0000003"
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert 1 <= records[-1]["nan_skips"] < 3  # the poisoned steps were skipped on both ranks, the others trained


def test_train_snapshots_are_exported_models_of_their_step(tmp_path):
    cfg = toy_config(tmp_path / "snap")
    cfg.snapshot_every = 2  # steps 2, 4, 6: 2 and 4 fall between the every-3 checkpoints
    final = train(cfg, toy_builder())
    snaps = sorted(p.name for p in (Path(cfg.output_dir) / "snapshots").iterdir())
    assert snaps == ["step-0000002", "step-0000004", "step-0000006"]
    for name in snaps:
        folder = Path(cfg.output_dir) / "snapshots" / name
        assert (folder / "unet" / "config.json").is_file() and (folder / "model_card.md").is_file()
    a, b = params_of(Path(cfg.output_dir) / "snapshots" / "step-0000006"), params_of(final)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    early = params_of(Path(cfg.output_dir) / "snapshots" / "step-0000002")
    assert not torch.equal(early["unet.conv_in.weight"], a["unet.conv_in.weight"]), "snapshots share one state"


def test_train_moving_average_resumes_exactly_and_is_what_ships(tmp_path):
    straight = train(toy_config(tmp_path / "straight", ema_decay=0.8), toy_builder())
    _reset()
    cfg = toy_config(tmp_path / "resumed", ema_decay=0.8)
    with pytest.raises(TrainingInterrupted):
        train(cfg, toy_builder(), stop_after=4)
    _reset()
    resumed = train(cfg, toy_builder(), resume=True)
    a, b = params_of(straight), params_of(resumed)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    last = latest_checkpoint(Path(cfg.output_dir))
    raw = params_of(last)
    assert json.loads((last / "ema_state.json").read_text())["optimization_step"] == 6
    assert not torch.equal(a["unet.conv_in.weight"], raw["unet.conv_in.weight"]), "export is not the average"
    assert "moving average" in (resumed / "model_card.md").read_text()


def test_train_switching_the_average_on_when_resuming_equals_ema_after_step(tmp_path):
    cfg = toy_config(tmp_path / "late")
    with pytest.raises(TrainingInterrupted):
        train(cfg, toy_builder(), stop_after=4)  # no average in the step-3 checkpoint
    _reset()
    cfg.optim = dataclasses.replace(cfg.optim, ema_decay=0.8, ema_after_step=3)
    late = train(cfg, toy_builder(), resume=True)
    _reset()
    planned = train(toy_config(tmp_path / "planned", ema_decay=0.8, ema_after_step=3), toy_builder())
    a, b = params_of(late), params_of(planned)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    _reset()
    plain = params_of(train(toy_config(tmp_path / "plain"), toy_builder()))
    assert not torch.equal(a["unet.conv_in.weight"], plain["unet.conv_in.weight"])


def test_train_resume_exports_a_snapshot_lost_to_a_kill(tmp_path):
    cfg = toy_config(tmp_path / "snap")
    cfg.snapshot_every = 3
    with pytest.raises(TrainingInterrupted):
        train(cfg, toy_builder(), stop_after=4)
    lost = Path(cfg.output_dir) / "snapshots" / "step-0000003"
    expected = params_of(lost)
    shutil.rmtree(lost)  # as if killed after the step-3 checkpoint, before its snapshot
    _reset()
    train(cfg, toy_builder(), resume=True)
    again = params_of(lost)
    for key in expected:
        torch.testing.assert_close(again[key], expected[key], rtol=0, atol=0, msg=key)
