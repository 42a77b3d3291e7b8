"""Registry of model configurations by name: ``sd21`` (paper scale) and small CPU ones (``demo-cpu``,
``demo-cpu-pixel``, ``demo-cpu-prior``, ``tiny``).

All keep SD2.1's block structure and module naming (4 down blocks, mid, 4 up blocks, ``attn1`` self-attention), so
layer names such as ``up_blocks.2.attentions.0.transformer_blocks.0.attn1`` mean the same place in every config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from cameo.model.layers import CAMEO_DEFAULT_LAYER

CodecKind = Literal["pixel", "autoencoder-kl"]

_ATTN_DOWN, _PLAIN_DOWN = "CrossAttnDownBlock2D", "DownBlock2D"
_ATTN_UP, _PLAIN_UP = "CrossAttnUpBlock2D", "UpBlock2D"


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one named configuration (everything ``MultiViewUNet`` needs, plus the latent codec)."""

    name: str
    image_size: int
    codec: CodecKind
    latent_channels: int
    latent_downsample: int
    block_out_channels: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    layers_per_block: int
    camera_channels: tuple[int, ...]
    full_res_attention: bool = True
    norm_num_groups: int = 32
    qk_norm: bool = True
    prediction_type: str = "v_prediction"
    cameo_layer: str = CAMEO_DEFAULT_LAYER
    pixel_shift: float = 0.0
    """``pixel`` codec: (x - shift) * scale of the [-1, 1] pixels, set from the training data's mean and std."""
    pixel_scale: float = 1.0
    prior_injection: str | None = None
    """Warped-reference prior (``MultiViewUNet`` ``prior_injection``): None (camera only, CAT3D), "input",
    "encoder" or "both"."""
    description: str = ""

    @property
    def latent_size(self) -> int:
        return self.image_size // self.latent_downsample

    def unet_config(self) -> dict[str, Any]:
        """Keyword arguments for diffusers' ``UNet2DConditionModel`` (text cross-attention is removed afterwards)."""
        down = [_ATTN_DOWN if self.full_res_attention else _PLAIN_DOWN, _ATTN_DOWN, _ATTN_DOWN, _PLAIN_DOWN]
        up = [_PLAIN_UP, _ATTN_UP, _ATTN_UP, _ATTN_UP if self.full_res_attention else _PLAIN_UP]
        return dict(
            sample_size=self.latent_size,
            in_channels=self.latent_channels,
            out_channels=self.latent_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=list(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            # diffusers' historical misnomer: for SD2.1 "attention_head_dim" is the number of heads per block.
            attention_head_dim=list(self.num_heads),
            # Required to build the transformer blocks; the cross-attention it sizes is deleted right after.
            cross_attention_dim=self.block_out_channels[-1],
            use_linear_projection=True,
            norm_num_groups=self.norm_num_groups,
        )


_DEMO_CPU = ModelSpec(
    name="demo-cpu",
    image_size=64,
    codec="autoencoder-kl",
    latent_channels=4,
    latent_downsample=2,
    block_out_channels=(32, 64, 128, 128),
    num_heads=(1, 2, 4, 4),
    layers_per_block=2,
    camera_channels=(32, 64),
    full_res_attention=False,
    description="64x64 images, x2 AutoencoderKL -> 32x32x4 latent, 2-core CPU training (the benchmark's).",
)

_TINY = ModelSpec(
    name="tiny",
    image_size=16,
    codec="pixel",
    latent_channels=3,
    latent_downsample=1,
    block_out_channels=(16, 16, 32, 32),
    num_heads=(2, 2, 4, 4),
    layers_per_block=2,
    camera_channels=(8,),
    norm_num_groups=8,
    description="Pixel-space toy for tests (seconds on CPU).",
)

_DEMO_CPU_PIXEL = replace(
    _DEMO_CPU,
    name="demo-cpu-pixel",
    codec="pixel",
    latent_channels=12,  # 3 colours x 2 x 2 pixels
    # mean -0.312 and std 0.391 of the [-1, 1] pixels of 308 demo-cpu training samples (objects + rooms)
    pixel_shift=-0.31,
    pixel_scale=2.5,
    description="demo-cpu's UNet on lossless x2 space-to-depth pixels (32x32x12): the CAT3D-style CPU model.",
)

MODEL_CONFIGS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="sd21",
            image_size=512,
            codec="autoencoder-kl",
            latent_channels=4,
            latent_downsample=8,
            block_out_channels=(320, 640, 1280, 1280),
            num_heads=(5, 10, 20, 20),
            layers_per_block=2,
            camera_channels=(32, 64, 128, 256),
            description="Full SD2.1 topology (paper scale); initialise from a local SD2.1 diffusers folder.",
        ),
        _DEMO_CPU,
        _DEMO_CPU_PIXEL,
        replace(
            _DEMO_CPU_PIXEL,
            name="demo-cpu-prior",
            prior_injection="both",
            description="demo-cpu-pixel with a warped-reference prior (MVGenMaster-style) at the UNet input and in "
                        "the camera encoder: the bundled model.",
        ),
        _TINY,
        replace(_TINY, name="tiny-prior", prior_injection="both", description="tiny with the warped-reference prior."),
    )
}


def get_spec(name: str) -> ModelSpec:
    """Look up a configuration by name, with an error listing the known ones."""
    try:
        return MODEL_CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(MODEL_CONFIGS)}") from None
