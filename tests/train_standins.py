"""Tiny stand-ins for the model and data used by the training-engine tests (and the 2-process DDP worker).

They follow the contracts in docs/CONTRACTS.md (sample dicts, MultiViewUNet call, logits [B, heads, F*L, F*L])
at toy sizes so a training step costs milliseconds.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.utils.data import Dataset

from cameo.cameras import look_at
from cameo.model import get_spec
from cameo.train.components import Components
from cameo.train.config import TrainConfig


class ToyScenes(Dataset):
    """Deterministic random-coloured views with cameras on a circle; pointmaps are a flat grid."""

    def __init__(self, count: int = 12, views: int = 4, size: int = 8, nan_item: int | None = None):
        self.count, self.views, self.size, self.nan_item = count, views, size, nan_item

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index = key[1] if isinstance(key, tuple) else key  # training reads (epoch, index); views do not vary
        gen = torch.Generator().manual_seed(index)
        f, s = self.views, self.size
        angles = torch.linspace(0, 1.2, f) + index * 0.1
        eye = torch.stack([3 * angles.sin(), torch.zeros(f), -3 * angles.cos()], -1)
        c2w = look_at(eye, torch.zeros(f, 3), torch.tensor([0.0, -1.0, 0.0]).expand(f, 3))
        K = torch.tensor([[s, 0, s / 2], [0, s, s / 2], [0, 0, 1.0]]).expand(f, 3, 3).clone()
        images = torch.rand(f, 3, s, s, generator=gen)
        if index == self.nan_item:
            images[0, 0, 0, 0] = float("nan")
        grid = torch.stack(torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij"), 0).float()
        points = torch.cat([grid, torch.zeros(1, s, s)], 0).expand(f, 3, s, s).clone()
        return {"images": images, "K": K, "c2w": c2w, "pointmaps": points,
                "ref_mask": torch.arange(f) < 1 + index % 3, "scene_id": f"toy{index}"}


class ToyUNet(ModelMixin, ConfigMixin):
    """A two-conv 'UNet' with camera conditioning and a 2-head attention whose logits can be returned."""

    @register_to_config
    def __init__(self, channels: int = 3, width: int = 8, heads: int = 2):
        super().__init__()
        self.conv_in = nn.Conv2d(channels + 7, width, 3, padding=1)
        self.qk = nn.Linear(width, 2 * width)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)
        self.time = nn.Embedding(1000, width)

    def forward(self, sample, timesteps, plucker, ref_mask, drop_camera=None, return_logits=False):
        b, f, c, h, w = sample.shape
        cam = plucker if drop_camera is None else plucker * (~drop_camera).float()[:, None, None, None, None]
        mask = ref_mask.float()[:, :, None, None, None].expand(b, f, 1, h, w)
        x = torch.cat([sample, cam, mask], 2).flatten(0, 1)
        feat = torch.nn.functional.silu(self.conv_in(x) + self.time(timesteps.flatten())[:, :, None, None])
        tokens = torch.nn.functional.avg_pool2d(feat, 2).flatten(2).transpose(1, 2)  # [B*F, L, width]
        q, k = self.qk(tokens).chunk(2, -1)
        heads = self.config.heads
        q = q.reshape(b, -1, heads, q.shape[-1] // heads).transpose(1, 2)
        k = k.reshape(b, -1, heads, k.shape[-1] // heads).transpose(1, 2)
        logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # [B, heads, F*L, F*L]
        out = self.conv_out(feat).unflatten(0, (b, f))
        return (out, logits) if return_logits else out


class ToyCameo(nn.Module):
    """A learned head over attention heads with a differentiable toy loss (engine tests only)."""

    def __init__(self, heads: int = 2):
        super().__init__()
        self.head = nn.Linear(heads, 1)

    def forward(self, logits: torch.Tensor, pointmaps: torch.Tensor) -> torch.Tensor:
        mixed = self.head(logits.float().permute(0, 2, 3, 1)).squeeze(-1)
        return -mixed.log_softmax(-1).diagonal(dim1=-2, dim2=-1).mean()


def toy_forward(model, sample, timesteps, plucker, ref_mask, drop_camera, want_logits):
    if want_logits:
        return model(sample, timesteps, plucker, ref_mask, drop_camera, return_logits=True)
    return model(sample, timesteps, plucker, ref_mask, drop_camera), None


def toy_builder(nan_item: int | None = None, keep: dict | None = None):
    """A ``build`` function for ``cameo.train.loop.train`` over the toy model and data.

    ``keep`` (if given) receives the built components, so a test can read the live modules after training.
    """

    def build(cfg: TrainConfig, accelerator) -> Components:
        parts = Components(unet=ToyUNet(), forward=toy_forward, train_set=ToyScenes(nan_item=nan_item),
                           val_set=ToyScenes(count=2), cameo=ToyCameo())
        if keep is not None:
            keep["parts"] = parts
        return parts

    return build


def toy_config(out: Path, **optim) -> TrainConfig:
    """A tiny config: batch 2, 6 steps, checkpoint every 3, CAMEO on."""
    cfg = TrainConfig(name="toy", output_dir=str(out), checkpoint_every=3, log_every=1, val_every=0)
    cfg.optim = dataclasses.replace(cfg.optim, batch_size=2, max_steps=6, lr=1e-2, **optim)
    return cfg


def write_sd_standin(folder: Path, preset: str = "tiny") -> Path:
    """A local random-weight stand-in of a diffusers Stable Diffusion folder: ``unet/`` (with text cross-attention)
    shaped like ``preset``'s UNet and a small x2 ``vae/`` with 4 latent channels and scaling factor 0.5."""
    torch.manual_seed(1)
    unet = UNet2DConditionModel(**{**get_spec(preset).unet_config(), "cross_attention_dim": 24})
    unet.save_pretrained(folder / "unet")
    vae = AutoencoderKL(block_out_channels=[32, 32], down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, scaling_factor=0.5)
    vae.save_pretrained(folder / "vae")
    return folder


def params_of(folder: Path) -> dict[str, torch.Tensor]:
    """UNet + head weights of an exported model or checkpoint folder."""
    from cameo.train.checkpoint import load_model_weights

    state = {f"unet.{k}": v for k, v in load_model_weights(folder, "unet").items()}
    if (folder / "cameo_head.safetensors").is_file():
        state |= {f"head.{k}": v for k, v in load_model_weights(folder, "cameo_head").items()}
    return state


WORKER_WATCHDOG_S = 100
"""A worker still running after this many seconds (a normal run takes under 30) prints every thread's stack and
exits with an error, so a hang in the process group shows where it is instead of a bare timeout."""
WATCHDOG_MESSAGE = "Timeout ("  # how faulthandler's dump begins


def ddp_worker(out: str) -> None:
    """Entry of the 2-process test: train a few steps (one item gives a NaN loss on one rank), then write this
    rank's parameters to ``out/rank<r>.pt``."""
    from accelerate import PartialState

    faulthandler.dump_traceback_later(WORKER_WATCHDOG_S, exit=True)

    from cameo.train.loop import train

    torch.set_num_threads(1)
    cfg = toy_config(Path(out) / "run", grad_accum=2)
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=3)
    cfg.checkpoint_every = 2
    keep: dict = {}
    train(cfg, toy_builder(nan_item=5, keep=keep))  # one poisoned item: the ranks must skip the same steps
    rank = PartialState().process_index
    parts = keep["parts"]  # the live modules this rank trained (accelerate wraps them, it does not copy them)
    state = {f"unet.{k}": v for k, v in parts.unet.state_dict().items()}
    state |= {f"head.{k}": v for k, v in parts.cameo.state_dict().items()}
    state["world_size"] = torch.tensor(PartialState().num_processes)
    torch.save(state, Path(out) / f"rank{rank}.pt")
    faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    ddp_worker(sys.argv[1])
