"""The CAMEO objective of a run and the loop's model call that captures the supervised layer's attention for it."""

from __future__ import annotations

import math

import torch
from accelerate.utils import extract_model_from_parallel

from cameo.cameo_loss import cameo_loss
from cameo.model import MultiViewUNet
from cameo.model.attention import CapturedAttention


class CameoObjective:
    """CAMEO loss of the captured layer against token correspondences of the sample's pointmaps (fp32).

    The projection head is ``model.cameo_head`` (a submodule of the UNet, so it is optimised and saved with it).
    """

    def __init__(self, model: MultiViewUNet, tau: float, loss: str):
        if model.cameo_head is None:
            raise ValueError("the model was built without a CAMEO layer")
        self.model, self.tau, self.loss = model, tau, loss

    def __call__(self, captured: CapturedAttention, pointmaps: torch.Tensor) -> torch.Tensor:
        from cameo.correspondence import token_correspondences

        height, width = pointmaps.shape[-2:]
        tokens = captured.q.shape[2] // captured.num_views
        rows = round(math.sqrt(tokens * height / width))
        corr = token_correspondences(pointmaps, (rows, tokens // rows), tau=self.tau)
        device = captured.q.device
        return cameo_loss(captured, corr.index.to(device), corr.valid.to(device), self.model.cameo_head, self.loss)


def multiview_forward(layer: str | None):
    """The loop's forward: plain model call, or one that captures q/k of ``layer`` for the CAMEO loss."""

    def forward(model, sample, timesteps, plucker, ref_mask, drop_camera, want_attention, prior=None):
        if not want_attention:
            return model(sample, timesteps, plucker, ref_mask, drop_camera, prior), None
        core = extract_model_from_parallel(model)
        with core.attention_control(capture=[layer]) as control:
            prediction = model(sample, timesteps, plucker, ref_mask, drop_camera, prior)
        return prediction, control.store[layer]

    return forward
