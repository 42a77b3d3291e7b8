"""cameo-train configs: shipped files load, CLI overrides apply, bad fields fail with file + field names."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cameo.train.cli import main, parse
from cameo.train.config import CONFIG_DIR, ConfigError, dump_config, load_config

SHIPPED = ["demo-cpu", "demo-cpu-refine", "demo-cpu-covisible", "demo-cpu-extrapolate", "demo-cpu-proxy",
           "demo-cpu-unseen", "demo-cpu-monodepth", "demo-cpu-cat3d", "bench-cameo", "bench-baseline", "bench-cameo-mean-head", "sd21-re10k", "sd21-co3d"]


@pytest.mark.parametrize("name", SHIPPED)
def test_train_shipped_configs_load_and_round_trip(name, tmp_path):
    cfg = load_config(name)
    assert cfg.name == name
    path = tmp_path / "again.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(str(path)) == cfg


def test_train_benchmark_baseline_is_the_cameo_arm_without_cameo():
    from cameo.train.codec_setup import autoencoder_dir

    base, cameo = load_config("bench-baseline"), load_config("bench-cameo")
    assert not base.cameo.enabled and cameo.cameo.enabled
    assert autoencoder_dir(base) == autoencoder_dir(cameo)  # one shared codec
    same = dataclasses.replace(cameo, name=base.name, output_dir=base.output_dir,
                               model=dataclasses.replace(cameo.model, codec_path=base.model.codec_path),
                               optim=dataclasses.replace(cameo.optim, max_steps=base.optim.max_steps),
                               cameo=dataclasses.replace(cameo.cameo, enabled=False))
    assert same == base  # max_steps: how far each arm was trained (the benchmark passes its own --max-steps)


def test_train_mean_head_ablation_is_the_cameo_arm_with_a_mean_head():
    ablation, cameo = load_config("bench-cameo-mean-head"), load_config("bench-cameo")
    assert ablation.cameo.head == "mean" and cameo.cameo.head == "mlp"
    same = dataclasses.replace(cameo, name=ablation.name, output_dir=ablation.output_dir,
                               model=dataclasses.replace(cameo.model, codec_path=ablation.model.codec_path),
                               optim=dataclasses.replace(cameo.optim, max_steps=ablation.optim.max_steps),
                               cameo=dataclasses.replace(cameo.cameo, head="mean"))
    assert same == ablation


def test_train_demo_config_is_the_paper_cameo_on_lossless_pixels():
    """The bundled model's config: CAMEO at the paper's layer / lambda / tau on the demo-cpu UNet in x2
    space-to-depth pixel space (no autoencoder stage), with the head averaging the attention heads."""
    from cameo.model import get_spec
    from cameo.train.codec_setup import autoencoder_dir, load_frozen_codec

    demo, arm = load_config("demo-cpu"), load_config("bench-cameo")
    assert demo.cameo.enabled and (demo.cameo.layer, demo.cameo.weight, demo.cameo.tau) == ("10", 0.02, 1.5)
    assert demo.cameo.head == "mean" and autoencoder_dir(demo) is None
    pixel, latent = get_spec(demo.model.preset), get_spec(arm.model.preset)
    assert pixel.codec == "pixel" and pixel.latent_size == latent.latent_size
    assert pixel.block_out_channels == latent.block_out_channels and pixel.num_heads == latent.num_heads
    codec = load_frozen_codec(demo, torch.device("cpu"))
    assert codec.factor == 2
    from cameo.eval.nvs import mixed_procedural_scenes

    latents = torch.stack([codec.encode(scene.images) for scene in mixed_procedural_scenes(4)])
    assert abs(latents.mean()) < 0.3 and 0.7 < latents.std() < 1.4  # standardised: the schedule's SNRs hold
    assert (demo.data, demo.diffusion, demo.seed) == (arm.data, arm.diffusion, arm.seed)


def test_refine_stage_continues_demo_cpu_on_the_same_data_and_objective():
    """Stage 2 of the bundled model: demo-cpu's data, preset, prior and CAMEO, warm-started from stage 1's export."""
    stage1, stage2 = load_config("demo-cpu"), load_config("demo-cpu-refine")
    assert (stage2.data, stage2.diffusion, stage2.seed, stage2.prior, stage2.cameo) == \
        (stage1.data, stage1.diffusion, stage1.seed, stage1.prior, stage1.cameo)
    assert stage2.model.preset == stage1.model.preset and stage2.model.init_from == f"{stage1.output_dir}/model"
    assert stage2.output_dir != stage1.output_dir and stage2.optim.lr < stage1.optim.lr


def test_covisible_stage_continues_stage_2_with_priors_cut_to_what_another_reference_sees():
    """Stage 3 of the bundled model: stage 2's data, objective and prior degradation, plus ``prior.covisible``."""
    stage2, stage3 = load_config("demo-cpu-refine"), load_config("demo-cpu-covisible")
    assert (stage3.data, stage3.diffusion, stage3.seed, stage3.cameo) == \
        (stage2.data, stage2.diffusion, stage2.seed, stage2.cameo)
    assert stage2.prior.covisible == 0 and stage3.prior.covisible > 0
    assert dataclasses.replace(stage3.prior, covisible=0.0) == stage2.prior
    assert stage3.model.preset == stage2.model.preset and stage3.model.init_from == f"{stage2.output_dir}/model"


def test_extrapolate_stage_continues_stage_3_with_the_depth_stereo_extrapolates():
    """Stage 4 of the bundled model: stage 3's data, objective and priors, plus ``prior.extrapolate``."""
    stage3, stage4 = load_config("demo-cpu-covisible"), load_config("demo-cpu-extrapolate")
    assert (stage4.data, stage4.diffusion, stage4.seed, stage4.cameo) == \
        (stage3.data, stage3.diffusion, stage3.seed, stage3.cameo)
    assert not stage3.prior.extrapolate and stage4.prior.extrapolate
    assert dataclasses.replace(stage4.prior, extrapolate=False) == stage3.prior
    assert stage4.model.preset == stage3.model.preset and stage4.model.init_from == f"{stage3.output_dir}/model"


def test_proxy_stage_continues_stage_4_with_proxy_priors_for_references_without_depth():
    """Stage 5 of the bundled model: stage 4's data, objective and priors, plus ``prior.proxy``."""
    stage4, stage5 = load_config("demo-cpu-extrapolate"), load_config("demo-cpu-proxy")
    assert (stage5.data, stage5.diffusion, stage5.seed, stage5.cameo, stage5.optim) == \
        (stage4.data, stage4.diffusion, stage4.seed, stage4.cameo, stage4.optim)
    assert not stage4.prior.proxy and stage5.prior.proxy
    assert dataclasses.replace(stage5.prior, proxy=False) == stage4.prior
    assert stage5.model.preset == stage4.model.preset and stage5.model.init_from == f"{stage4.output_dir}/model"


def test_monodepth_stage_continues_stage_5_with_the_depth_network_as_stand_in():
    """The stage-6 experiment: stage 5's data, objective and priors, the depth network instead of the plane, a gentler
    schedule."""
    stage5, stage6 = load_config("demo-cpu-proxy"), load_config("demo-cpu-monodepth")
    assert (stage6.data, stage6.diffusion, stage6.seed, stage6.cameo) == \
        (stage5.data, stage5.diffusion, stage5.seed, stage5.cameo)
    assert (stage5.prior.stand_in, stage6.prior.stand_in) == ("plane", "depth_net")
    assert dataclasses.replace(stage6.prior, stand_in="plane") == stage5.prior
    assert stage6.optim.lr < stage5.optim.lr and stage6.optim.max_steps < stage5.optim.max_steps
    assert stage6.model.preset == stage5.model.preset and stage6.model.init_from == f"{stage5.output_dir}/model"


def test_train_help_lists_the_shipped_configs(capsys):
    with pytest.raises(SystemExit):
        parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in SHIPPED)


@pytest.mark.parametrize("name", ["sd21-re10k", "sd21-co3d"])
def test_train_paper_settings(name):
    cfg = load_config(name)
    assert (cfg.optim.batch_size, cfg.optim.lr, cfg.optim.betas, cfg.optim.weight_decay) == (6, 2.5e-5, (0.9, 0.999), 0.01)
    assert (cfg.data.resolution, cfg.data.num_views, cfg.data.min_refs, cfg.data.max_refs) == (512, 4, 1, 3)
    assert (cfg.cameo.layer, cfg.cameo.weight, cfg.cameo.tau, cfg.cameo.head) == ("10", 0.02, 1.5, "mlp")
    assert cfg.mixed_precision == "bf16" and cfg.cfg_drop_prob == 0.1 and cfg.model.preset == "sd21"


def test_train_cli_overrides_apply():
    stage, cfg, args = parse(["--config", "demo-cpu", "--optim.lr", "1e-3", "--cameo.no-enabled",
                              "--output-dir", "runs/x", "--resume"])
    assert (stage, args.resume, args.half) == ("train", True, False)
    stage, _, args = parse(["export", "--config", "demo-cpu", "--out", "m", "--half"])
    assert (stage, args.out, args.half) == ("export", "m", True)
    assert cfg.optim.lr == 1e-3 and not cfg.cameo.enabled and cfg.output_dir == "runs/x"
    assert cfg.optim.batch_size == load_config("demo-cpu").optim.batch_size


def test_train_bad_config_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim\.lrr"):
        load_config(str(bad))
    bad.write_text("cameo:\n  head: transformer\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*cameo\.head"):
        load_config(str(bad))
    assert main(["--config", str(bad)]) == 2
    with pytest.raises(ConfigError, match="shipped"):
        load_config("no-such-config")


def test_train_config_dir_holds_the_shipped_configs():
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) == sorted(SHIPPED)


def test_lr_factor_warms_up_holds_and_decays_to_zero_at_the_end():
    from cameo.train.loop import lr_factor

    constant = [lr_factor(s, 4, 20, 0) for s in range(20)]
    assert constant[:5] == [0.0, 0.25, 0.5, 0.75, 1.0] and set(constant[4:]) == {1.0}
    decayed = [lr_factor(s, 4, 20, 8) for s in range(20)]
    assert decayed[:12] == constant[:12]  # untouched before the last 8 steps: a run extended with decay resumes
    assert decayed[12:] == [(20 - s) / 8 for s in range(12, 20)] and decayed[-1] > 0 == lr_factor(20, 4, 20, 8)
