"""cameo-train end to end on the real MultiViewUNet (tiny / demo-cpu presets) and procedural data made in tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import set_seed
from diffusers import AutoencoderKL, DDPMScheduler
from safetensors.torch import load_file

from cameo.model import MultiViewUNet
from cameo.train.assemble import build_components
from cameo.train.model_setup import model_spec
from cameo.train.cli import main
from cameo.train.config import load_config
from cameo.model import build_model


@pytest.fixture(autouse=True)
def fresh_accelerate():
    torch.set_num_threads(2)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


def _write_config(tmp_path: Path, preset: str, resolution: int, **top) -> Path:
    cfg = {
        "name": "t", "seed": 3, "output_dir": str(tmp_path / "run"), "checkpoint_every": 2, "log_every": 1,
        "val_every": 3, "val_ddim_steps": 2,
        "data": {"path": str(tmp_path / "data"), "scenes": 3, "scene_views": 4, "resolution": resolution,
                 "val_scenes": 2},
        "model": {"preset": preset},
        "diffusion": {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"},
        "optim": {"batch_size": 2, "max_steps": 3, "lr": 1e-3},
        "cameo": {"enabled": True, "layer": 10},
        "autoencoder": {"steps": 3, "batch_size": 2},
        **top,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_cli_trains_tiny_model_with_cameo_and_validation(tmp_path):
    config = _write_config(tmp_path, "tiny", 16)
    assert main(["--config", str(config)]) == 0
    run = tmp_path / "run"
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(r["loss_cameo"]) and r["loss_cameo"] > 0 for r in records)
    assert math.isfinite(records[-1]["val_psnr"]) and records[-1]["nan_skips"] == 0
    from cameo.model_folder import CameoModel

    loaded = CameoModel.from_pretrained(run / "model", "cpu")  # the exported folder is what cameo-recon loads
    assert loaded.image_size == 16
    model = MultiViewUNet.from_pretrained(run / "model" / "unet")
    assert model.cameo_head is not None and model.config.prediction_type == "v_prediction"
    schedule = DDPMScheduler.from_pretrained(run / "model" / "scheduler")
    assert schedule.config.rescale_betas_zero_snr and schedule.config.timestep_spacing == "trailing"
    cfg = load_config(str(config))
    set_seed(cfg.seed)
    initial = build_model(model_spec(cfg), cameo_head="mlp")
    changed = [k for k, v in initial.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert any(k.startswith("cameo_head.") for k in changed), "the CAMEO head was not trained"
    assert len(changed) > len(initial.state_dict()) // 2


def test_train_cameo_off_builds_no_head_and_logs_no_cameo_loss(tmp_path):
    config = _write_config(tmp_path, "tiny", 16, val_every=0)
    assert main(["--config", str(config), "--cameo.no-enabled", "--optim.max-steps", "1"]) == 0
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert "loss_cameo" not in record and record["loss"] == record["loss_denoise"]
    assert MultiViewUNet.from_pretrained(tmp_path / "run" / "model" / "unet").cameo_head is None


def test_train_latent_preset_trains_autoencoder_then_model(tmp_path):
    config = _write_config(tmp_path, "demo-cpu", 32, val_every=0)  # the preset at half size: 16x16 latents
    assert main(["--config", str(config), "--optim.max-steps", "1", "--optim.batch-size", "1",
                 "--mixed-precision", "bf16"]) == 0
    run = tmp_path / "run"
    vae = AutoencoderKL.from_pretrained(run / "model" / "vae")
    assert vae.config.scaling_factor != 1.0  # calibrated to unit-variance latents
    ae_log = [json.loads(x) for x in (run / "autoencoder_metrics.jsonl").read_text().splitlines()]
    assert "val_recon_psnr" in ae_log[-1]
    assert math.isfinite(json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["loss_cameo"])

    # Exporting the run's newest checkpoint in float16 halves the files; loaders get float32 modules back.
    assert main(["export", "--config", str(config), "--out", str(tmp_path / "half"), "--half"]) == 0
    for part in ("unet", "vae"):
        weights = load_file(str(next((tmp_path / "half" / part).glob("*.safetensors"))))
        assert all(v.dtype == torch.float16 for v in weights.values() if v.is_floating_point())
    from cameo.model_folder import CameoModel

    full, half = (CameoModel.from_pretrained(folder, "cpu") for folder in (run / "model", tmp_path / "half"))
    assert all(p.dtype == torch.float32 for p in half.unet.parameters())
    for a, b in zip(full.unet.state_dict().values(), half.unet.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4)


def test_latent_preset_with_a_stable_diffusion_codec_exports_a_self_contained_model(tmp_path):
    """A latent preset whose codec is the VAE of a --model.pretrained folder (here a random-weight stand-in of a
    local SD folder, bf16 on CPU as the issue's sd21-re10k run): the export carries that VAE, so cameo-recon
    reconstructs with it (the export used to lack vae/ and be refused)."""
    from cameo.scene import load_scene
    from recon.pipeline import ReconOptions, run_reconstruction
    from tests.pipeline_helpers import write_two_view_scene
    from tests.train_standins import write_sd_standin

    standin = write_sd_standin(tmp_path / "sd", "demo-cpu")
    config = _write_config(tmp_path, "demo-cpu", 32, val_every=0)
    assert main(["--config", str(config), "--model.pretrained", str(standin), "--optim.max-steps", "2",
                 "--optim.batch-size", "1", "--mixed-precision", "bf16"]) == 0
    export = tmp_path / "run" / "model"
    assert AutoencoderKL.from_pretrained(export / "vae").config.scaling_factor == 0.5  # the SD folder's VAE
    options = ReconOptions(num_views=4, steps=2, fit_iterations=3, fit_points=200, lpips_weight=0.0,
                           checkpoint=export, device="cpu", write_video=False, show_progress=False)
    scene = load_scene(write_two_view_scene(tmp_path / "scene"))
    result = run_reconstruction(scene, tmp_path / "out" / "splat.ply", options)
    assert result.ply.is_file() and len(result.splats) > 0
    assert len(result.target_indices) == 4 and all(torch.isfinite(v).all() for v in result.images)


def test_train_missing_autoencoder_folder_is_a_clear_error(tmp_path):
    config = _write_config(tmp_path, "demo-cpu", 64)
    cfg = load_config(str(config))
    cfg.model.codec_path = str(tmp_path / "nowhere")
    from accelerate import Accelerator

    with pytest.raises(FileNotFoundError, match="cameo-train autoencoder"):
        build_components(cfg, Accelerator(cpu=True))


def test_train_same_config_reproduces_the_same_weights(tmp_path):
    """What `cameo-train --config demo-cpu` relies on to reproduce the bundled checkpoint (here: tiny preset)."""
    from tests.train_standins import params_of

    config = _write_config(tmp_path, "tiny", 16, val_every=0)
    exports = []
    for run in ("a", "b"):
        assert main(["--config", str(config), "--optim.max-steps", "2", "--output-dir", str(tmp_path / run)]) == 0
        exports.append(params_of(tmp_path / run / "model"))
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    for key, value in exports[0].items():
        assert torch.equal(value, exports[1][key]), key


def test_train_warm_starts_from_an_exported_model(tmp_path):
    config = _write_config(tmp_path, "tiny", 16, val_every=0)
    assert main(["--config", str(config), "--optim.max-steps", "2"]) == 0
    source = MultiViewUNet.from_pretrained(tmp_path / "run" / "model" / "unet")
    assert main(["--config", str(config), "--model.init-from", str(tmp_path / "run" / "model"),
                 "--optim.max-steps", "0", "--output-dir", str(tmp_path / "warm")]) == 0
    warm = MultiViewUNet.from_pretrained(tmp_path / "warm" / "model" / "unet")
    for (name, a), b in zip(source.state_dict().items(), warm.state_dict().values()):
        assert torch.equal(a, b), name
    # a folder from another configuration is refused with a clear message (exit code 2)
    assert main(["--config", str(config), "--cameo.no-enabled", "--model.init-from", str(tmp_path / "run" / "model"),
                 "--optim.max-steps", "0", "--output-dir", str(tmp_path / "bad")]) == 2


def test_train_with_proxy_priors_exports_a_model_that_asks_for_them(tmp_path):
    config = _write_config(tmp_path, "tiny-prior", 16, val_every=0, prior={"covisible": 1.0, "proxy": True})
    assert main(["--config", str(config), "--optim.max-steps", "1"]) == 0
    from cameo.model_folder import CameoModel

    loaded = CameoModel.from_pretrained(tmp_path / "run" / "model", "cpu")
    assert loaded.conditioning == "camera+prior" and loaded.unet.uses_proxy  # sampling then adds proxies
