"""MultiViewUNet: diffusers' ``UNet2DConditionModel`` turned into a CAT3D-style multi-view denoiser.

Changes to the stock UNet (all done on the diffusers module, no fork):
- text cross-attention removed (``attn2 = None, norm2 = None`` in every transformer block);
- every self-attention runs :class:`MultiViewAttnProcessor`, 3D in the blocks of ``MULTIVIEW_BLOCKS``;
- optional per-head LayerNorm on q and k (``qk_norm``);
- camera conditioning (Plücker rays + reference mask) encoded and added to the features right after ``conv_in``;
- optionally (``prior_injection``) a warped-reference prior per view (the references' pixels forward-warped into
  that view through depth, plus a validity mask; MVGenMaster's 3D prior), folded space-to-depth and concatenated to
  the UNet input ("input": observed pixels can pass straight through), and/or fed to the camera encoder beside the
  rays ("encoder", MVGenMaster's way); see :mod:`cameo.priors`;
- the CAMEO projection head (:mod:`cameo.model.heads`) is a submodule, so it is saved with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from torch import nn

from cameo.model.attention import AttentionControl, MultiViewAttnProcessor
from cameo.model.camera_encoder import CameraEncoder
from cameo.model.heads import AttentionLogitHead, HeadKind
from cameo.model.layers import CAMEO_DEFAULT_LAYER, is_multiview_layer, layer_name


PriorInjection = Literal["input", "encoder", "both"]
PRIOR_INJECTIONS: tuple[str, ...] = ("input", "encoder", "both")
PRIOR_CHANNELS = 4
"""A prior is RGB in [0, 1] (0 where nothing was warped) + a validity mask, at image resolution."""


class MultiViewUNet(ModelMixin, ConfigMixin):
    """Multi-view diffusion UNet; ``forward`` follows docs/CONTRACTS.md ("Model call")."""

    @register_to_config
    def __init__(
        self,
        unet_config: dict[str, Any],
        camera_channels: tuple[int, ...] = (32, 64, 128, 256),
        qk_norm: bool = True,
        cameo_layer: str | None = CAMEO_DEFAULT_LAYER,
        cameo_head_kind: HeadKind = "mlp",
        prediction_type: str = "v_prediction",
        image_size: int = 512,
        codec: str = "autoencoder-kl",
        codec_shift: float = 0.0,
        codec_scale: float = 1.0,
        prior_injection: PriorInjection | None = None,
        prior_proxy: bool = False,
    ) -> None:
        super().__init__()
        if prior_injection not in (None, *PRIOR_INJECTIONS):
            raise ValueError(f"prior_injection must be None or one of {PRIOR_INJECTIONS}, got {prior_injection!r}")
        if prior_proxy and prior_injection is None:
            raise ValueError("prior_proxy needs a model with prior_injection")
        self.prior_fold = image_size // int(unet_config["sample_size"])
        if prior_injection in ("input", "both"):
            unet_config = {**unet_config, "in_channels": unet_config["in_channels"] + PRIOR_CHANNELS * self.prior_fold**2}
        self.unet = UNet2DConditionModel(**unet_config)
        self._strip_cross_attention()
        attn1 = self._self_attention_modules()
        if qk_norm:
            for attn in attn1.values():
                attn.norm_q = nn.LayerNorm(attn.inner_dim // attn.heads, eps=1e-6)
                attn.norm_k = nn.LayerNorm(attn.inner_dim // attn.heads, eps=1e-6)
        self.unet.set_attn_processor(
            {f"{name}.processor": MultiViewAttnProcessor(name, is_multiview_layer(name)) for name in attn1}
        )
        encoder_in = 7 + (PRIOR_CHANNELS if prior_injection in ("encoder", "both") else 0)
        self.camera_encoder = CameraEncoder(tuple(camera_channels), self.unet.config.block_out_channels[0], encoder_in)
        self.cameo_head: AttentionLogitHead | None = None
        if cameo_layer is not None:
            if cameo_layer not in attn1:
                raise ValueError(f"cameo_layer {cameo_layer!r} is not a self-attention layer of this UNet")
            self.cameo_head = AttentionLogitHead(attn1[cameo_layer].heads, cameo_head_kind)
        self._control: AttentionControl | None = None
        self._camera_embedding: torch.Tensor | None = None
        # diffusers offers no input for a dense condition after conv_in; a forward hook adds it there.
        self.unet.conv_in.register_forward_hook(self._add_camera_embedding)

    # ----------------------------------------------------------------------------------------------- structure
    def _strip_cross_attention(self) -> None:
        for module in self.unet.modules():
            if isinstance(module, BasicTransformerBlock):
                module.attn2 = None
                module.norm2 = None

    def _self_attention_modules(self) -> dict[str, Attention]:
        """Self-attention modules by full name, in forward order (down blocks, mid, up blocks)."""
        found = {n: m for n, m in self.unet.named_modules() if isinstance(m, Attention) and n.endswith(".attn1")}
        order = {prefix: i for i, prefix in enumerate(("down_blocks", "mid_block", "up_blocks"))}
        return dict(sorted(found.items(), key=lambda item: (order[item[0].split(".")[0]], item[0])))

    @property
    def self_attention_layers(self) -> list[str]:
        """Full names of this model's self-attention layers in forward order."""
        return list(self._self_attention_modules())

    @property
    def multiview_layers(self) -> list[str]:
        """The subset of :attr:`self_attention_layers` that attends jointly over views."""
        return [n for n in self.self_attention_layers if is_multiview_layer(n)]

    def resolve_layer(self, layer: int | str) -> str:
        """Full name of a layer given as a name or as the paper's SD2.1 layer number (0..15)."""
        name = layer_name(layer) if isinstance(layer, int) else layer
        if name not in self._self_attention_modules():
            raise KeyError(f"layer {layer!r} ({name}) does not exist in this config; it has {self.self_attention_layers}")
        return name

    def attention_heads(self, layer: int | str) -> int:
        return self._self_attention_modules()[self.resolve_layer(layer)].heads

    # ---------------------------------------------------------------------------------------- introspection
    @contextmanager
    def attention_control(
        self, capture: Iterable[int | str] = (), perturb: Iterable[int | str] = ()
    ) -> Iterator[AttentionControl]:
        """Within the block, forward passes capture q/k/v of ``capture`` layers (into ``control.store``, with
        gradients) and replace ``perturb`` layers by identity attention. Layers are names or SD2.1 layer numbers."""
        control = AttentionControl(
            capture=frozenset(self.resolve_layer(layer) for layer in capture),
            perturb=frozenset(self.resolve_layer(layer) for layer in perturb),
        )
        previous, self._control = self._control, control
        try:
            yield control
        finally:
            self._control = previous

    # ------------------------------------------------------------------------------------------------ forward
    def _add_camera_embedding(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output if self._camera_embedding is None else output + self._camera_embedding

    @property
    def uses_prior(self) -> bool:
        """Whether :meth:`forward` expects a warped-reference ``prior``."""
        return self.config.prior_injection is not None

    @property
    def uses_proxy(self) -> bool:
        """Whether the model was trained with proxy priors for references without depth (``cameo.priors.add_proxy``),
        so sampling gives them one."""
        return bool(getattr(self.config, "prior_proxy", False))

    def _prior_input(self, prior: torch.Tensor) -> torch.Tensor:
        """``[N,4,H,W]`` prior -> ``[N, 4 f^2, h, w]``: RGB in the pixel codec's standardised range (0 in holes)
        and the mask, folded space-to-depth to the sample's grid (exact for the pixel codec, a fixed fold of the
        pixels for latent codecs)."""
        rgb, mask = prior[:, :3], prior[:, 3:]
        pixels = ((rgb * 2.0 - 1.0 - self.config.codec_shift) * self.config.codec_scale) * mask
        return F.pixel_unshuffle(torch.cat([pixels, mask], dim=1), self.prior_fold)

    def _conditioning(
        self, plucker: torch.Tensor, ref_mask: torch.Tensor, prior: torch.Tensor | None, drop: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Camera-encoder input ``[B*F, C, H, W]`` and the prior's UNet-input channels (or None)."""
        if self.uses_prior and prior is None:
            raise ValueError("this model expects a warped-reference prior [B,F,4,H,W] (cameo.priors)")
        if not self.uses_prior and prior is not None:
            raise ValueError("this model was built without prior_injection and takes no prior")
        if drop is not None:  # the unconditional branch: no camera, no prior; the reference mask stays
            keep = (~drop.bool()).to(plucker.dtype)[:, None, None, None, None]
            plucker = plucker * keep
            prior = prior * keep if prior is not None else None
        mask = ref_mask.to(plucker.dtype)[:, :, None, None, None].expand(-1, -1, 1, *plucker.shape[-2:])
        parts = [plucker, mask]
        if self.config.prior_injection in ("encoder", "both"):
            parts.append(prior * 2.0 - 1.0)
        cond = torch.cat(parts, dim=2).flatten(0, 1).to(self.dtype)
        extra = None
        if self.config.prior_injection in ("input", "both"):
            extra = self._prior_input(prior.flatten(0, 1).to(self.dtype))
        return cond, extra

    def forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        plucker: torch.Tensor,
        ref_mask: torch.Tensor,
        drop_camera: torch.Tensor | None = None,
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Denoise ``sample [B,F,C,h,w]`` at per-view ``timesteps [B,F]`` (references at 0).

        ``plucker [B,F,6,H,W]`` at image resolution, ``ref_mask [B,F]`` bool; ``drop_camera [B]`` zeroes the
        Plücker rays and the prior of those samples (classifier-free guidance) while keeping the reference mask.
        ``prior [B,F,4,H,W]`` (models with ``prior_injection`` only): warped RGB in [0, 1] + validity mask.
        Returns the prediction ``[B,F,C,h,w]`` (``config.prediction_type``).
        """
        b, f = sample.shape[:2]
        if timesteps.shape != (b, f) or ref_mask.shape != (b, f) or plucker.shape[:3] != (b, f, 6):
            raise ValueError(
                f"shape mismatch: sample {tuple(sample.shape)}, timesteps {tuple(timesteps.shape)} (want [B,F]), "
                f"plucker {tuple(plucker.shape)} (want [B,F,6,H,W]), ref_mask {tuple(ref_mask.shape)} (want [B,F])"
            )
        if prior is not None and prior.shape != (b, f, PRIOR_CHANNELS, *plucker.shape[-2:]):
            raise ValueError(f"prior {tuple(prior.shape)}: want [B,F,{PRIOR_CHANNELS},H,W] = "
                             f"{(b, f, PRIOR_CHANNELS, *plucker.shape[-2:])}")
        cond, extra = self._conditioning(plucker, ref_mask, prior, drop_camera)
        model_in = sample.flatten(0, 1)
        if extra is not None:
            model_in = torch.cat([model_in, extra.to(model_in.dtype)], dim=1)
        self._camera_embedding = self.camera_encoder(cond)
        try:
            out = self.unet(
                model_in,
                timesteps.flatten(),
                encoder_hidden_states=None,
                cross_attention_kwargs={"num_views": f, "control": self._control},
            ).sample
        finally:
            self._camera_embedding = None
        return out.unflatten(0, (b, f))


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in model.parameters())

