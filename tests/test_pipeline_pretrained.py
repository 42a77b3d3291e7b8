"""cameo.model_folder: loading an exported model folder (and older layouts), its codec, and the errors for missing
parts."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from cameo.model import AutoencoderCodec, PixelCodec, build_codec, build_model, get_spec, small_autoencoder
from cameo.model_folder import CameoModel, ModelConfig, ModelFolderError, default_model_dir
from cameo.sampling import default_training_schedule
from tests.pipeline_helpers import FRAMES_PER_GROUP, MODEL_SIZE, write_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("pretrained") / "model")


def _save(folder: Path, model, codec, image_size: int) -> None:
    """``model`` exported with ``codec`` through the folder's owner (4 views per call)."""
    config = ModelConfig.for_unet(model.config, image_size, 4)
    CameoModel(model, codec, default_training_schedule(model.config.prediction_type), config).save_pretrained(folder)


def test_loads_weights_schedule_and_sizes(tiny_dir):
    pre = CameoModel.from_pretrained(tiny_dir, "cpu")
    torch.manual_seed(0)
    reference = build_model("tiny").state_dict()  # write_tiny_model seeds 0 before building
    loaded = pre.unet.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    assert not pre.unet.training
    assert isinstance(pre.codec, PixelCodec)
    assert (pre.image_size, pre.frames_per_group) == (MODEL_SIZE, FRAMES_PER_GROUP)
    assert pre.schedule.config.prediction_type == pre.unet.config.prediction_type
    assert pre.device == torch.device("cpu")


def test_latent_model_loads_its_vae(tmp_path):
    spec = dataclasses.replace(get_spec("tiny"), codec="autoencoder-kl", latent_channels=4, latent_downsample=2,
                               image_size=16)
    model, vae = build_model(spec), small_autoencoder(spec)
    _save(tmp_path / "m", model, AutoencoderCodec(vae), 16)
    pre = CameoModel.from_pretrained(tmp_path / "m", "cpu")
    assert isinstance(pre.codec, AutoencoderCodec)
    latents = pre.codec.encode(torch.rand(2, 3, 16, 16))
    assert latents.shape == (2, 4, 8, 8)
    # older cameo-train exports named the codec folder autoencoder/: accepted too
    shutil.move(tmp_path / "m" / "vae", tmp_path / "m" / "autoencoder")
    assert isinstance(CameoModel.from_pretrained(tmp_path / "m", "cpu").codec, AutoencoderCodec)
    shutil.rmtree(tmp_path / "m" / "autoencoder")
    with pytest.raises(ModelFolderError, match=r"vae missing"):
        CameoModel.from_pretrained(tmp_path / "m", "cpu")


def test_folded_pixel_model_gets_its_space_to_depth_factor(tmp_path):
    """A pixel-space model on 2x2-folded pixels (demo-cpu-pixel's codec) needs no codec folder; the factor comes
    from the saved image and sample sizes, the standardisation from the saved model config."""
    spec = dataclasses.replace(get_spec("tiny"), latent_channels=12, latent_downsample=2, image_size=16,
                               pixel_shift=-0.25, pixel_scale=3.0)
    _save(tmp_path / "m", build_model(spec), build_codec(spec), 16)
    pre = CameoModel.from_pretrained(tmp_path / "m", "cpu")
    assert isinstance(pre.codec, PixelCodec) and (pre.codec.factor, pre.codec.shift, pre.codec.scale) == (2, -0.25, 3.0)
    images = torch.rand(2, 3, 16, 16)
    assert pre.codec.encode(images).shape == (2, 12, 8, 8)
    torch.testing.assert_close(pre.codec.decode(pre.codec.encode(images)), images)


@pytest.mark.parametrize("part", ["unet", "scheduler", "cameo_model.json"])
def test_missing_part_is_named(tiny_dir, tmp_path, part):
    folder = shutil.copytree(tiny_dir, tmp_path / "m")
    target = folder / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ModelFolderError, match=rf"/m/{part}\S* missing"):
        CameoModel.from_pretrained(folder, "cpu")


def test_older_layout_reads_sizes_from_the_training_config(tiny_dir, tmp_path):
    """Folders exported before cameo_model.json (the bundled model among them) carry train_config.yaml instead."""
    folder = shutil.copytree(tiny_dir, tmp_path / "m")
    (folder / "cameo_model.json").unlink()
    (folder / "train_config.yaml").write_text("name: old\ndata:\n  resolution: 16\n  num_views: 3\n")
    pre = CameoModel.from_pretrained(folder, "cpu")
    assert (pre.image_size, pre.frames_per_group, pre.conditioning) == (16, 3, "camera")
    assert pre.train_config["name"] == "old"


def test_saved_config_describes_the_model(tiny_dir):
    saved = json.loads((tiny_dir / "cameo_model.json").read_text())
    assert saved == {"image_size": MODEL_SIZE, "frames_per_group": FRAMES_PER_GROUP, "codec": "pixel",
                     "conditioning": "camera"}


def test_latent_model_without_its_codec_is_not_written(tmp_path):
    spec = dataclasses.replace(get_spec("tiny"), codec="autoencoder-kl", latent_channels=4, latent_downsample=2,
                               image_size=16)
    with pytest.raises(ValueError, match="no autoencoder codec"):
        _save(tmp_path / "m", build_model(spec), PixelCodec(), 16)
    assert not (tmp_path / "m").exists()


def test_missing_folder_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMEO_MODEL", str(tmp_path / "absent"))
    assert default_model_dir() == tmp_path / "absent"
    with pytest.raises(ModelFolderError, match=r"--checkpoint PATH.*cameo-train --config demo-cpu"):
        CameoModel.from_pretrained(None, "cpu")
    monkeypatch.delenv("CAMEO_MODEL")
    assert default_model_dir() == Path(__file__).resolve().parents[1] / "assets" / "model"


def test_unavailable_cuda_is_a_clear_error(tiny_dir):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        CameoModel.from_pretrained(tiny_dir, "cuda")


BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "model"


def test_bundled_model_is_small_fp16_and_samples_deterministically():
    """The shipped default model: float16 safetensors under 50 MB, the demo-cpu CAMEO config, and a 2-to-2 sample
    from the bundled demo scene's inputs that is finite, in range and reproducible for a seed."""
    from safetensors import safe_open

    from cameo.sampling import sample_views
    from cameo.scene import load_scene

    weights = sorted(BUNDLED.rglob("*.safetensors"))
    assert weights, f"{BUNDLED} ships no weights"
    assert sum(f.stat().st_size for f in BUNDLED.rglob("*") if f.is_file()) < 50 * 2**20
    for file in weights:
        with safe_open(str(file), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} <= {"F16", "I64"}, file
    pre = CameoModel.from_pretrained(BUNDLED, "cpu")
    train = pre.train_config  # the training config recorded beside the model
    assert train["name"] == "demo-cpu-proxy" and train["cameo"]["enabled"] and str(train["cameo"]["layer"]) == "10"
    assert train["prior"]["covisible"] > 0 and train["prior"]["extrapolate"]  # stage 4: priors as stereo leaves them
    assert train["prior"]["proxy"] and pre.unet.uses_proxy  # stage 5: a photo without depth gets the proxy prior
    assert (pre.image_size, pre.frames_per_group) == (64, 4) and "steps" in (pre.model_card or "")
    scene = load_scene(Path(__file__).resolve().parents[1] / "assets" / "demo" / "object_00" / "scene.json")
    images = torch.nn.functional.interpolate(scene.load_images(), size=(64, 64), mode="area")
    K = scene.K.clone()
    K[:, :2] *= 64 / scene.frames[0].width
    args = (pre.unet, pre.codec, images[:1], K[:1], scene.c2w[:1], K[1:], scene.c2w[1:])
    first = sample_views(*args, steps=3, cfg=2.0, seed=7, schedule=pre.schedule)
    again = sample_views(*args, steps=3, cfg=2.0, seed=7, schedule=pre.schedule)
    assert first.shape == (1, 3, 64, 64) and torch.isfinite(first).all()
    assert torch.equal(first, again) and first.std() > 0.01
