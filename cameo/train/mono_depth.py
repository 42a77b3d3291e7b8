"""The ``depth`` stage: trains the one-photo depth network (:class:`cameo.geometry.mono_depth.MonoDepthNet`) on the
run's procedural samples and their rendered depth, and saves it with ``save_pretrained`` (atomically) as
``<output_dir>/depth``, the folder a model export carries as ``depth/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from cameo.atomic import atomic_dir, atomic_path, write_text_atomic
from cameo.cameras import look_at_point
from cameo.geometry.mono_depth import MonoDepthNet, relative_disparity
from cameo.model_folder import DEPTH_FOLDER
from cameo.train.config import TrainConfig
from cameo.train.data import open_datasets
from cameo.train.loop import TrainingInterrupted, lr_factor


def _batch(dataset, keys: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, intrinsics and relative-disparity targets of every view of the samples at ``keys`` (training:
    ``(epoch, index)``; held-out sets: indices); the look-at point is that of each sample's cameras, as sampling
    takes it from the references and the targets."""
    images, K, targets = [], [], []
    for key in keys:
        sample = dataset[key]
        focus = look_at_point(sample["c2w"].double()).float()
        images.append(sample["images"])
        K.append(sample["K"])
        targets.append(relative_disparity(sample["depth"], sample["K"], sample["c2w"], focus))
    return torch.cat(images), torch.cat(K), torch.cat(targets)


CHECKPOINT = "depth_checkpoint.pt"
"""The stage's resumable state in ``<output_dir>``: weights, optimiser, sampling generator and step."""
METRICS = "depth_metrics.jsonl"
"""The stage's log in ``<output_dir>``: training loss every 50 steps, then the held-out losses."""


def train_depth_net(cfg: TrainConfig, state, resume: bool = False, stop_after: int | None = None) -> Path:
    """Train the depth network of ``cfg.depth_net`` and save it to ``<output_dir>/depth``; returns the folder.

    L1 on the relative disparity, horizontal flips (the intrinsics' centre is mirrored with the image), AdamW with a
    linear decay over the last third. Every ``checkpoint_every`` steps and at the end the state is written
    atomically; ``resume`` continues from it exactly as if the run had never stopped (``stop_after``: stop after
    that step, for tests), and a finished run resumed only saves and scores its network again. At
    the end the held-out scenes' loss is logged beside that of the look-at plane itself (disparity 1: the proxy the
    network replaces), the trivial baseline it must beat. ``state``: an ``Accelerator`` or ``PartialState``.
    """
    d, out = cfg.depth_net, Path(cfg.output_dir)
    set_seed(cfg.seed)
    net = MonoDepthNet(widths=tuple(d.widths)).to(state.device).train()
    train_set, val_set = open_datasets(cfg.data, cfg.seed, state)
    optimizer = torch.optim.AdamW(net.parameters(), lr=d.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed)
    first = _resume_or_start(out, net, optimizer, gen, resume)
    log = out / METRICS
    per_sample = cfg.data.num_views
    bar = tqdm(range(first, d.steps), initial=first, total=d.steps, desc="depth net", dynamic_ncols=True)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = d.lr * lr_factor(step, 0, d.steps, d.steps // 3)
        indices = torch.randint(len(train_set), (max(1, d.batch_size // per_sample),), generator=gen)
        images, K, target = _batch(train_set, [(step, int(i)) for i in indices])
        if bool(torch.rand(1, generator=gen) < 0.5):
            images, target, K = images.flip(-1), target.flip(-1), K.clone()
            K[:, 0, 2] = images.shape[-1] - K[:, 0, 2]
        loss = F.l1_loss(net(images.to(state.device), K.to(state.device)), target.to(state.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(l1=f"{loss.item():.4f}")
        if (step + 1) % 50 == 0:
            _log(log, {"step": step + 1, "loss": loss.item()})
        if (step + 1) % d.checkpoint_every == 0 or step + 1 == d.steps:
            _save_checkpoint(out, net, optimizer, gen, step + 1)
        if stop_after is not None and step + 1 >= stop_after:
            raise TrainingInterrupted(f"stopped after step {step + 1}")
    folder = out / DEPTH_FOLDER
    with atomic_dir(folder, overwrite=True) as tmp:
        net.eval().save_pretrained(str(tmp), safe_serialization=True)
    if val_set is not None and len(val_set):
        val_loss, plane_loss = validation_loss(net, val_set, state.device)
        _log(log, {"step": d.steps, "val_loss": val_loss, "val_loss_plane": plane_loss})
    return folder


def _resume_or_start(out: Path, net: MonoDepthNet, optimizer: torch.optim.Optimizer, gen: torch.Generator,
                     resume: bool) -> int:
    """The first step to train: the checkpoint's (weights, optimiser and generator restored, the metrics log cut
    to it) with ``resume``, else 0 with a fresh log; a checkpoint without ``resume`` is an error."""
    path, log = out / CHECKPOINT, out / METRICS
    if not resume or not path.is_file():
        if path.is_file():
            raise FileExistsError(f"{path} holds an earlier depth run; pass --resume to continue it, or a new "
                                  f"output_dir")
        out.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        return 0
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(saved["net"])
    optimizer.load_state_dict(saved["optimizer"])
    gen.set_state(saved["generator"])
    step = int(saved["step"])
    lines = log.read_text().splitlines() if log.is_file() else []
    kept = [line for line in lines if json.loads(line)["step"] <= step and "val_loss" not in line]
    write_text_atomic(log, "".join(line + "\n" for line in kept))
    return step


def _save_checkpoint(out: Path, net: MonoDepthNet, optimizer: torch.optim.Optimizer, gen: torch.Generator,
                     step: int) -> None:
    """Write the resumable state at ``step`` atomically."""
    with atomic_path(out / CHECKPOINT) as tmp:
        torch.save({"net": net.state_dict(), "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
                    "step": step}, tmp)


def _log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


@torch.no_grad()
def validation_loss(net: MonoDepthNet, dataset, device) -> tuple[float, float]:
    """Mean L1 of the relative disparity over every view of the held-out samples: the network's, and the look-at
    plane's."""
    net.eval()
    images, K, target = _batch(dataset, list(range(len(dataset))))
    loss = F.l1_loss(net(images.to(device), K.to(device)), target.to(device)).item()
    net.train()
    return loss, (target - 1.0).abs().mean().item()
