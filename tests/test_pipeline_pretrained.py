"""cameo.pretrained: loading an exported model folder, its codec, and the errors for missing parts."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from cameo.model import AutoencoderCodec, IdentityCodec, build_model, get_spec, small_autoencoder
from cameo.pretrained import ModelFolderError, default_model_dir, load_pretrained, save_model_folder
from cameo.sampling import default_training_schedule
from cameo.train.config import TrainConfig
from tests.pipeline_helpers import FRAMES_PER_GROUP, MODEL_SIZE, write_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("pretrained") / "model")


def test_loads_weights_schedule_and_sizes(tiny_dir):
    pre = load_pretrained(tiny_dir, "cpu")
    torch.manual_seed(0)
    reference = build_model("tiny").state_dict()  # write_tiny_model seeds 0 before building
    loaded = pre.model.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    assert not pre.model.training
    assert isinstance(pre.codec, IdentityCodec)
    assert (pre.image_size, pre.frames_per_group) == (MODEL_SIZE, FRAMES_PER_GROUP)
    assert pre.schedule.config.prediction_type == pre.model.config.prediction_type
    assert pre.device == torch.device("cpu")


def test_latent_model_loads_its_vae(tmp_path):
    spec = dataclasses.replace(get_spec("tiny"), codec="autoencoder-kl", latent_channels=4, latent_downsample=2,
                               image_size=16)
    model, vae = build_model(spec), small_autoencoder(spec)
    cfg = TrainConfig()
    cfg.data.resolution = 16
    save_model_folder(tmp_path / "m", model, default_training_schedule(spec.prediction_type), cfg, vae=vae)
    pre = load_pretrained(tmp_path / "m", "cpu")
    assert isinstance(pre.codec, AutoencoderCodec)
    latents = pre.codec.encode(torch.rand(2, 3, 16, 16))
    assert latents.shape == (2, 4, 8, 8)
    # cameo-train's export names the codec folder autoencoder/: accepted too
    shutil.move(tmp_path / "m" / "vae", tmp_path / "m" / "autoencoder")
    assert isinstance(load_pretrained(tmp_path / "m", "cpu").codec, AutoencoderCodec)
    shutil.rmtree(tmp_path / "m" / "autoencoder")
    with pytest.raises(ModelFolderError, match=r"vae missing"):
        load_pretrained(tmp_path / "m", "cpu")


@pytest.mark.parametrize("part", ["unet", "scheduler", "train_config.yaml"])
def test_missing_part_is_named(tiny_dir, tmp_path, part):
    folder = shutil.copytree(tiny_dir, tmp_path / "m")
    target = folder / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ModelFolderError, match=rf"/m/{part}\S* missing"):
        load_pretrained(folder, "cpu")


def test_missing_folder_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMEO_MODEL", str(tmp_path / "absent"))
    assert default_model_dir() == tmp_path / "absent"
    with pytest.raises(ModelFolderError, match=r"--checkpoint PATH.*cameo-train --config demo-cpu"):
        load_pretrained(None, "cpu")
    monkeypatch.delenv("CAMEO_MODEL")
    assert default_model_dir() == Path(__file__).resolve().parents[1] / "assets" / "model"


def test_unavailable_cuda_is_a_clear_error(tiny_dir):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_pretrained(tiny_dir, "cuda")
