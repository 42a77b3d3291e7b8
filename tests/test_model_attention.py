"""MultiViewUNet behaviour: 3D attention mixing, capture/perturbation, camera conditioning, save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cameo.model import CAMEO_DEFAULT_LAYER, MultiViewUNet, build_model

S = 16  # tiny config image / latent size


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b: int = 1, f: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.zeros(b, f, dtype=torch.bool)
    ref[:, 0] = True
    t = torch.randint(1, 1000, (b, f), generator=g).masked_fill(ref, 0)
    return torch.randn(b, f, 3, S, S, generator=g), t, torch.randn(b, f, 6, S, S, generator=g), ref


def _model(seed: int = 0) -> MultiViewUNet:
    torch.manual_seed(seed)
    model = build_model("tiny").eval()
    # Non-zero camera projection so that camera tests see an effect (it is zero-initialised on purpose).
    torch.nn.init.normal_(model.camera_encoder.zero_out.weight, std=0.1)
    return model


def _module(model: MultiViewUNet, name: str) -> torch.nn.Module:
    return model.unet.get_submodule(name)


@torch.no_grad()
def test_3d_layers_mix_views_and_2d_layers_do_not() -> None:
    model = _model()
    sample, t, plucker, ref = _inputs()
    changed = sample.clone()
    changed[:, 2] += 1.0
    base, other = model(sample, t, plucker, ref), model(changed, t, plucker, ref)
    assert (base[:, 1] - other[:, 1]).abs().max() > 1e-4  # view 2 reaches view 1 through 3D attention
    with model.attention_control(perturb=model.multiview_layers):  # identity attention: no cross-view path left
        base, other = model(sample, t, plucker, ref), model(changed, t, plucker, ref)
    torch.testing.assert_close(base[:, [0, 1]], other[:, [0, 1]], atol=1e-6, rtol=0)
    assert (base[:, 2] - other[:, 2]).abs().max() > 1e-4


@torch.no_grad()
def test_captured_logits_reproduce_the_layer_output() -> None:
    model = _model()
    sample, t, plucker, ref = _inputs(b=2)
    for name in (CAMEO_DEFAULT_LAYER, "down_blocks.0.attentions.0.transformer_blocks.0.attn1"):
        attn = _module(model, name)
        outputs = []
        hook = attn.register_forward_hook(lambda m, i, o: outputs.append(o))
        with model.attention_control(capture=[name]) as control:
            model(sample, t, plucker, ref)
        hook.remove()
        cap = control.store[name]
        assert cap.is_3d == (name == CAMEO_DEFAULT_LAYER)
        probs = cap.logits().softmax(-1)
        explicit = torch.matmul(probs, cap.v)
        torch.testing.assert_close(explicit, F.scaled_dot_product_attention(cap.q, cap.k, cap.v), atol=1e-5, rtol=1e-5)

        def project(x: torch.Tensor) -> torch.Tensor:
            merged = x.transpose(1, 2).flatten(2)
            return attn.to_out[0](merged).reshape(outputs[0].shape)

        torch.testing.assert_close(project(explicit), outputs[0], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_identity_perturbation_outputs_projected_values() -> None:
    model = _model()
    sample, t, plucker, ref = _inputs()
    name = CAMEO_DEFAULT_LAYER
    attn, outputs = _module(model, name), []
    hook = attn.register_forward_hook(lambda m, i, o: outputs.append(o))
    with model.attention_control(capture=[name], perturb=[name]) as control:
        model(sample, t, plucker, ref)
    hook.remove()
    v = control.store[name].v
    expected = attn.to_out[0](v.transpose(1, 2).flatten(2)).reshape(outputs[0].shape)
    torch.testing.assert_close(outputs[0], expected, atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_camera_conditioning_and_drop_camera() -> None:
    sample, t, plucker, ref = _inputs(b=2)
    fresh = build_model("tiny").eval()  # zero-initialised camera projection: no effect yet
    torch.testing.assert_close(fresh(sample, t, plucker, ref), fresh(sample, t, torch.zeros_like(plucker), ref))

    model = _model()
    cond = model(sample, t, plucker, ref)
    drop = torch.tensor([True, False])
    dropped = model(sample, t, plucker, ref, drop_camera=drop)
    no_rays = model(sample, t, torch.zeros_like(plucker), ref)
    torch.testing.assert_close(dropped[0], no_rays[0])  # camera zeroed for sample 0 ...
    torch.testing.assert_close(dropped[1], cond[1])  # ... and kept for sample 1
    assert (dropped[0] - cond[0]).abs().max() > 1e-4
    other_mask = model(sample, t, plucker, ref, drop_camera=torch.tensor([True, True]))
    flipped = model(sample, t, plucker, ~ref, drop_camera=torch.tensor([True, True]))
    assert (other_mask - flipped).abs().max() > 1e-4  # the reference mask survives drop_camera


@torch.no_grad()
def test_save_load_round_trip(tmp_path) -> None:
    model = _model()
    torch.nn.init.normal_(model.cameo_head.reduce.weight)
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "config.json").is_file()
    assert (tmp_path / "ckpt" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = MultiViewUNet.from_pretrained(tmp_path / "ckpt").eval()
    sample, t, plucker, ref = _inputs(b=2)
    torch.testing.assert_close(loaded(sample, t, plucker, ref), model(sample, t, plucker, ref), atol=0, rtol=0)
    torch.testing.assert_close(loaded.cameo_head.reduce.weight, model.cameo_head.reduce.weight)
    assert loaded.multiview_layers == model.multiview_layers
