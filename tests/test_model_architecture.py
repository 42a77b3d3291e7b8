"""Architecture of MultiViewUNet: SD2.1 topology, 3D layers, layer numbering, pretrained init, codecs."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from cameo.model import (
    CAMEO_DEFAULT_LAYER,
    MODEL_CONFIGS,
    PixelCodec,
    build_codec,
    build_model,
    count_parameters,
    get_spec,
    layer_downsample,
    layer_index,
    layer_name,
)
from tests.train_standins import write_sd_standin

SD21_STOCK_UNET_PARAMS = 865_910_724  # diffusers SD2.1 UNet with text cross-attention


pytestmark = pytest.mark.usefixtures("one_thread")


def test_sd21_topology_on_meta_device() -> None:
    spec = get_spec("sd21")
    with torch.device("meta"):
        stock = UNet2DConditionModel(**{**spec.unet_config(), "cross_attention_dim": 1024})
        model = build_model("sd21")
    assert count_parameters(stock) == SD21_STOCK_UNET_PARAMS
    # No text cross-attention left, q/k norms added; total = UNet + camera encoder + CAMEO head.
    assert not any(".attn2." in n or ".norm2." in n for n, _ in model.unet.named_parameters() if "transformer_blocks" in n)
    assert count_parameters(model.unet) == 815_537_540
    assert count_parameters(model.camera_encoder) == 1_128_128
    assert count_parameters(model) == 816_666_149

    layers = model.self_attention_layers
    assert len(layers) == 16 and layers == [layer_name(i) for i in range(16)]
    assert model.multiview_layers == [layer_name(i) for i in range(2, 13)]
    assert layer_name(10) == "up_blocks.2.attentions.0.transformer_blocks.0.attn1" == CAMEO_DEFAULT_LAYER
    assert layer_index(CAMEO_DEFAULT_LAYER) == 10
    assert model.attention_heads(10) == 10
    assert 64 // layer_downsample(layer_name(10)) == 32  # 32x32 tokens per view for a 64x64 latent
    assert [64 // layer_downsample(layer_name(i)) for i in (0, 2, 4, 6, 7, 13)] == [64, 32, 16, 8, 16, 64]


def test_small_configs_keep_layer_names() -> None:
    for name in ("demo-cpu", "tiny"):
        model = build_model(name)
        assert CAMEO_DEFAULT_LAYER in model.multiview_layers
        assert set(model.self_attention_layers) <= set(layer_name(i) for i in range(16))
    with pytest.raises(KeyError, match="does not exist"):
        build_model("demo-cpu").resolve_layer(0)  # demo-cpu has no full-resolution attention
    with pytest.raises(KeyError, match="unknown model config"):
        get_spec("nope")


def test_token_grid_of_layer10_in_tiny_forward() -> None:
    torch.manual_seed(0)
    model = build_model("tiny")
    spec = MODEL_CONFIGS["tiny"]
    b, f, s = 1, 3, spec.latent_size
    with model.attention_control(capture=[10]) as control:
        model(torch.randn(b, f, 3, s, s), torch.zeros(b, f), torch.randn(b, f, 6, s, s), torch.ones(b, f, dtype=torch.bool))
    captured = control.store[CAMEO_DEFAULT_LAYER]
    assert captured.is_3d and captured.q.shape[:3] == (b, model.attention_heads(10), f * (s // 2) ** 2)


def _fake_sd_folder(tmp_path, spec_name: str = "tiny"):
    return write_sd_standin(tmp_path, spec_name)


def test_init_from_stable_diffusion_folder(tmp_path) -> None:
    folder = _fake_sd_folder(tmp_path)
    stock = UNet2DConditionModel.from_pretrained(folder / "unet")
    model = build_model("tiny", pretrained=folder)
    torch.testing.assert_close(model.unet.conv_in.weight, stock.conv_in.weight)
    name = "up_blocks.2.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    torch.testing.assert_close(model.unet.state_dict()[name], stock.state_dict()[name])
    codec = build_codec("sd21", pretrained=folder)
    assert codec.scaling_factor == 0.5

    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model("tiny", pretrained=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a diffusers Stable Diffusion folder"):
        build_model("tiny", pretrained=tmp_path / "empty")
    with pytest.raises(ValueError, match="does not fit"):
        build_model("demo-cpu", pretrained=folder)  # other widths: strict shape check


def test_codecs() -> None:
    images = torch.rand(2, 3, 3, 64, 64)
    codec = build_codec("demo-cpu")
    latents = codec.encode(images)
    assert latents.shape == (2, 3, 4, 32, 32)
    decoded = codec.decode(latents)
    assert decoded.shape == images.shape and 0.0 <= decoded.min() and decoded.max() <= 1.0
    identity = build_codec("tiny")
    assert isinstance(identity, PixelCodec)
    torch.testing.assert_close(identity.decode(identity.encode(images)), images)


def test_pixel_codec_folds_pixels_into_channels_losslessly() -> None:
    """demo-cpu-pixel: [.., 3, 64, 64] <-> [.., 12, 32, 32], each latent channel one standardised pixel of a 2x2
    cell; the standardisation brings the training images to about zero mean and unit variance."""
    images = torch.rand(2, 3, 3, 64, 64)
    codec = build_codec("demo-cpu-pixel")
    latents = codec.encode(images)
    assert latents.shape == (2, 3, 12, 32, 32)
    torch.testing.assert_close(latents[0, 0, 0], (images[0, 0, 0, ::2, ::2] * 2 - 1 + 0.31) * 2.5)  # red, top-left of each cell
    torch.testing.assert_close(latents[0, 0, 3], (images[0, 0, 0, 1::2, 1::2] * 2 - 1 + 0.31) * 2.5)  # red, bottom-right
    torch.testing.assert_close(codec.decode(latents), images)
    torch.testing.assert_close(codec.decode(codec.encode(images[0, 0])), images[0, 0])  # one unbatched view
    model = build_model("demo-cpu-pixel")
    assert model.unet.config.in_channels == model.unet.config.out_channels == 12
    with pytest.raises(ValueError, match="factor"):
        PixelCodec(0)
    with pytest.raises(ValueError, match="scale"):
        PixelCodec(2, scale=0.0)
