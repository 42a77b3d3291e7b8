"""The one-photo depth network: its target and estimate in the cameras' units, the stand-in it gives photos without
depth in sampling's priors, the model folder that carries it, and the ``cameo-train depth`` stage."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from cameo.cameras import look_at, look_at_point
from cameo.geometry.mono_depth import MAX_DISPARITY, MIN_DISPARITY, MonoDepthNet, relative_disparity
from cameo.priors import PROXY_CONFIDENCE, add_proxy, stand_ins_for_depthless, proxy_plane_depth

SIZE = 16


def _cameras(views: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    angles = torch.linspace(-0.3, 0.3, views)
    eye = torch.stack([3 * angles.sin(), torch.zeros(views), -3 * angles.cos()], -1)
    c2w = look_at(eye, torch.zeros(views, 3), torch.tensor([0.0, -1.0, 0.0]).expand(views, 3))
    K = torch.tensor([[SIZE * 1.2, 0, SIZE / 2], [0, SIZE * 1.2, SIZE / 2], [0, 0, 1.0]]).expand(views, 3, 3)
    return K.clone(), c2w


def _flat_net(disparity: float) -> MonoDepthNet:
    """A network whose every pixel predicts ``disparity`` (head weights zero, bias the value)."""
    net = MonoDepthNet(widths=(8, 8)).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(disparity)
    return net


def test_estimate_scales_the_look_at_plane_by_the_predicted_disparity_and_drops_the_far_end() -> None:
    K, c2w = _cameras()
    focus = look_at_point(c2w.double()).float()
    images = torch.rand(3, 3, SIZE, SIZE)
    plane = proxy_plane_depth(K, c2w, focus, SIZE, SIZE)
    torch.testing.assert_close(_flat_net(0.5).estimate(images, K, c2w, focus), 2.0 * plane)
    assert bool(_flat_net(MIN_DISPARITY).estimate(images, K, c2w, focus).isnan().all())  # sky: no depth


def test_the_target_inverts_the_estimate_and_gives_sky_zero_disparity() -> None:
    K, c2w = _cameras(1)
    focus = look_at_point(_cameras()[1].double()).float()
    scale = proxy_plane_depth(K, c2w, focus, SIZE, SIZE)
    depth = scale * (2.0 * torch.rand(1, SIZE, SIZE) + 0.5)
    depth[0, 0, :4] = float("nan")
    target = relative_disparity(depth, K, c2w, focus)
    assert bool((target[0, 0, :4] == 0).all())
    seen = ~depth.isnan()
    torch.testing.assert_close((scale / target)[seen], depth[seen])
    near = relative_disparity(scale / 100, K, c2w, focus)
    assert bool((near == MAX_DISPARITY).all())


def test_photos_without_depth_get_the_network_depth_at_full_confidence() -> None:
    """A network predicting the look-at plane gives exactly the proxy's pixels, but as measured depth (mask 1, so
    the sampler anchors them); references with depth are left as they are."""
    K, c2w = _cameras()
    images = torch.rand(1, 3, SIZE, SIZE)
    empty = torch.zeros(3, 4, SIZE, SIZE)
    proxy = add_proxy(empty, images, K[:1], c2w[:1], K, c2w, torch.tensor([True]))
    estimated = stand_ins_for_depthless(empty, None, images, K[:1], c2w[:1], K, c2w, _flat_net(1.0))
    shown = proxy[:, 3] > 0
    assert float(shown[1:].float().mean()) > 0.3
    torch.testing.assert_close(estimated[:, :3], proxy[:, :3])
    torch.testing.assert_close(estimated[:, 3], proxy[:, 3] / PROXY_CONFIDENCE)
    measured = torch.rand(3, 4, SIZE, SIZE)
    measured[:, 3] = 1.0  # the reference's own view is covered: it has depth, nothing is added
    from cameo.geometry.cloud import fuse_depth

    cloud = fuse_depth(images, torch.full((1, SIZE, SIZE), 3.0), K[:1], c2w[:1])
    torch.testing.assert_close(stand_ins_for_depthless(measured, cloud, images, K[:1], c2w[:1], K, c2w, _flat_net(1.0)),
                               measured)


def test_depth_stage_trains_exports_and_the_model_folder_loads_the_network(tmp_path) -> None:
    from cameo.model_folder import CameoModel
    from cameo.train.cli import main

    cfg = {
        "name": "t", "seed": 1, "output_dir": str(tmp_path / "run"), "checkpoint_every": 1, "log_every": 1,
        "val_every": 0,
        "data": {"path": str(tmp_path / "data"), "scenes": 3, "scene_views": 4, "resolution": 16, "val_scenes": 1},
        "model": {"preset": "tiny-prior"},
        "optim": {"batch_size": 1, "max_steps": 1},
        "cameo": {"enabled": False},
        "depth_net": {"steps": 60, "batch_size": 8, "widths": [8, 16], "lr": 3e-3},
    }
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["depth", "--config", str(config)]) == 0
    records = [json.loads(x) for x in (tmp_path / "run" / "depth_metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    assert last["step"] == 60 and last["val_loss"] < last["val_loss_plane"]  # it beats the look-at plane
    assert main(["--config", str(config)]) == 0  # the diffusion stage; its export carries depth/
    loaded = CameoModel.from_pretrained(tmp_path / "run" / "model", "cpu")
    trained = MonoDepthNet.from_pretrained(str(tmp_path / "run" / "depth"))
    assert loaded.depth_net is not None
    for a, b in zip(loaded.depth_net.state_dict().values(), trained.state_dict().values()):
        torch.testing.assert_close(a, b)
    copy = loaded.save_pretrained(tmp_path / "copy", half=True)
    half = CameoModel.from_pretrained(copy, "cpu").depth_net
    assert half is not None and next(half.parameters()).dtype == torch.float32
    import shutil

    shutil.rmtree(tmp_path / "copy" / "depth")
    assert CameoModel.from_pretrained(copy, "cpu").depth_net is None


def test_depth_stage_resumes_exactly_from_its_checkpoint(tmp_path) -> None:
    """Stopped after step 25 (checkpoint at 20), resumed: the same network and log as an uninterrupted run; resuming
    a finished run changes nothing; a checkpoint left behind refuses a fresh start."""
    import pytest
    from accelerate import PartialState

    from cameo.train.config import DataConfig, DepthNetConfig, TrainConfig
    from cameo.train.data import ensure_data
    from cameo.train.loop import TrainingInterrupted
    from cameo.train.mono_depth import CHECKPOINT, train_depth_net

    data = DataConfig(path=str(tmp_path / "data"), scenes=3, scene_views=4, resolution=16, val_scenes=1)
    depth = DepthNetConfig(steps=40, batch_size=8, widths=(8, 16), lr=3e-3, checkpoint_every=20)
    state = PartialState(cpu=True)
    ensure_data(data, state)

    def run(name: str, **kwargs) -> Path:
        return train_depth_net(TrainConfig(name=name, output_dir=str(tmp_path / name), data=data, depth_net=depth),
                               state, **kwargs)

    straight = run("straight")
    with pytest.raises(TrainingInterrupted):
        run("resumed", stop_after=25)
    assert (tmp_path / "resumed" / CHECKPOINT).is_file()
    with pytest.raises(FileExistsError, match="--resume"):
        run("resumed")
    resumed = MonoDepthNet.from_pretrained(str(run("resumed", resume=True))).state_dict()
    again = MonoDepthNet.from_pretrained(str(run("resumed", resume=True))).state_dict()  # finished: the same network
    a = MonoDepthNet.from_pretrained(str(straight)).state_dict()
    for b in (resumed, again):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    logs = [(tmp_path / n / "depth_metrics.jsonl").read_text() for n in ("straight", "resumed")]
    assert logs[0] == logs[1]  # the steps logged after the checkpoint were cut, then written again
    with pytest.raises(FileExistsError, match="--resume"):
        run("straight")  # a finished run is not overwritten by accident either


def test_the_sampler_holds_estimated_pixels_more_loosely_than_measured_ones() -> None:
    from cameo.model.codec import PixelCodec
    from cameo.priors import ESTIMATED_ANCHOR, estimated_anchor_weights, prior_anchor

    before = torch.zeros(1, 2, 4, SIZE, SIZE)
    before[:, :, 3, :, : SIZE // 2] = 1.0  # measured left half
    after = before.clone()
    after[:, :, 3, :, SIZE // 2:] = 1.0  # the right half added from one-photo depth
    weights = estimated_anchor_weights(before, after)
    mask = prior_anchor(PixelCodec(), after, 1.0, weights=weights).mask
    assert bool((mask[..., : SIZE // 2] == 1).all()) and bool((mask[..., SIZE // 2:] == ESTIMATED_ANCHOR).all())
    assert bool((prior_anchor(PixelCodec(), after, 1.0).mask == 1).all())  # without weights: all held fully
