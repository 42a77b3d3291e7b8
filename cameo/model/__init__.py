"""Multi-view diffusion model (CAT3D architecture on diffusers' UNet2DConditionModel) and its latent codecs."""

from cameo.model.attention import AttentionControl, CapturedAttention, MultiViewAttnProcessor
from cameo.model.codec import AutoencoderCodec, PixelCodec, LatentCodec, small_autoencoder
from cameo.model.configs import MODEL_CONFIGS, ModelSpec, get_spec
from cameo.model.layers import CAMEO_DEFAULT_LAYER, SD21_SELF_ATTENTION_LAYERS, layer_downsample, layer_index, layer_name
from cameo.model.factory import build_codec, build_model, load_stable_diffusion_unet
from cameo.model.unet import MultiViewUNet, count_parameters

__all__ = [
    "AutoencoderCodec",
    "PixelCodec",
    "LatentCodec",
    "build_codec",
    "build_model",
    "load_stable_diffusion_unet",
    "small_autoencoder",
    "AttentionControl",
    "CAMEO_DEFAULT_LAYER",
    "CapturedAttention",
    "MODEL_CONFIGS",
    "ModelSpec",
    "MultiViewAttnProcessor",
    "MultiViewUNet",
    "SD21_SELF_ATTENTION_LAYERS",
    "count_parameters",
    "get_spec",
    "layer_downsample",
    "layer_index",
    "layer_name",
]
