"""Assembles the real training components of a config (model, codec, CAMEO objective, data) for ``cameo-train``."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator

from cameo.model import build_model
from cameo.model_folder import DEPTH_FOLDER, load_depth_net
from cameo.train.codec_setup import load_frozen_codec
from cameo.train.components import Components
from cameo.train.config import TrainConfig
from cameo.train.data import open_datasets
from cameo.train.model_setup import model_spec, warm_start
from cameo.train.objective import CameoObjective, multiview_forward


def build_components(cfg: TrainConfig, accelerator: Accelerator) -> Components:
    """Model, codec, CAMEO objective and datasets of ``cfg`` (used by ``cameo-train``)."""
    spec = model_spec(cfg)
    model = build_model(spec, cfg.model.pretrained, cameo_head=cfg.cameo.head, prior_proxy=cfg.prior.proxy)
    if cfg.model.init_from:
        warm_start(model, Path(cfg.model.init_from))
    codec = load_frozen_codec(cfg, accelerator.device)
    train_set, val_set = open_datasets(cfg.data, cfg.seed, accelerator, cfg.cameo.enabled, Path(cfg.output_dir))
    depth_net = None
    if cfg.prior.proxy and cfg.prior.stand_in == "depth_net":
        depth_net = load_depth_net(Path(cfg.output_dir), torch.device("cpu"))  # the priors are built on the CPU
        if depth_net is None:
            raise FileNotFoundError(f"prior.stand_in depth_net: {Path(cfg.output_dir) / DEPTH_FOLDER} missing; run "
                                    f"'cameo-train depth --config {cfg.name}' first")
    return Components(
        unet=model,
        forward=multiview_forward(spec.cameo_layer),
        train_set=train_set,
        val_set=val_set,
        cameo=CameoObjective(model, cfg.cameo.tau, cfg.cameo.loss) if cfg.cameo.enabled else None,
        codec=codec,
        depth_net=depth_net,
    )
