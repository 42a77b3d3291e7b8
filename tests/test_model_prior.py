"""The warped-reference prior: its channels in the model, the unconditional branch, training priors and dropout,
warm starts from a camera-only model, and sampling with reference depth."""

from __future__ import annotations

import math

import pytest
import torch

from cameo.cameras import look_at
from cameo.model import build_model
from cameo.geometry.cloud import fuse_depth
from cameo.geometry.mono_depth import MonoDepthNet
from cameo.priors import PROXY_CONFIDENCE, add_proxy, cloud_priors, set_reference_priors, views_prior
from cameo.train.config import PriorConfig
from cameo.train.model_setup import warm_start
from cameo.train.priors import covisible_depth, degrade_depth, training_priors


def _cameras(views: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    angles = torch.linspace(-0.3, 0.3, views)
    eye = torch.stack([3 * angles.sin(), torch.zeros(views), -3 * angles.cos()], -1)
    c2w = look_at(eye, torch.zeros(views, 3), torch.tensor([0.0, -1.0, 0.0]).expand(views, 3))
    K = torch.tensor([[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1.0]]).expand(views, 3, 3).clone()
    return K, c2w


def _model_inputs(model, b: int = 2, f: int = 3, size: int = 16):
    torch.manual_seed(0)
    sample = torch.randn(b, f, 3, size, size)
    timesteps = torch.full((b, f), 500)
    timesteps[:, 0] = 0
    plucker = torch.randn(b, f, 6, size, size)
    ref_mask = torch.zeros(b, f, dtype=torch.bool)
    ref_mask[:, 0] = True
    return sample, timesteps, plucker, ref_mask


def _perturb_new_inputs(model) -> None:
    """Give the zero-initialised output convs weights so that every input reaches the prediction."""
    with torch.no_grad():
        model.camera_encoder.zero_out.weight.normal_(0, 0.1)


def test_prior_channels_change_the_prediction_and_are_required():
    model = build_model("tiny-prior", cameo_head="mean").eval()
    _perturb_new_inputs(model)
    assert model.uses_prior
    assert model.unet.conv_in.in_channels == 3 + 4  # tiny: 3 channels, no fold; prior RGB + mask concatenated
    assert model.camera_encoder.body[0].in_channels == 7 + 4
    sample, t, plucker, ref_mask = _model_inputs(model)
    prior = torch.rand(2, 3, 4, 16, 16)
    with torch.no_grad():
        a = model(sample, t, plucker, ref_mask, None, prior)
        b = model(sample, t, plucker, ref_mask, None, torch.zeros_like(prior))
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(ValueError, match="expects a warped-reference prior"):
        model(sample, t, plucker, ref_mask)
    camera_only = build_model("tiny", cameo_head="mean")
    with pytest.raises(ValueError, match="takes no prior"):
        camera_only(sample, t, plucker, ref_mask, None, prior)


def test_unconditional_branch_drops_prior_and_camera():
    model = build_model("tiny-prior", cameo_head="mean").eval()
    _perturb_new_inputs(model)
    sample, t, plucker, ref_mask = _model_inputs(model)
    drop = torch.tensor([True, True])
    with torch.no_grad():
        dropped = model(sample, t, plucker, ref_mask, drop, torch.rand(2, 3, 4, 16, 16))
        empty = model(sample, t, torch.zeros_like(plucker), ref_mask, None, torch.zeros(2, 3, 4, 16, 16))
    torch.testing.assert_close(dropped, empty)


def test_warm_start_from_camera_only_model_keeps_its_output(tmp_path):
    source = build_model("tiny", cameo_head="mean").eval()
    with torch.no_grad():
        source.camera_encoder.zero_out.weight.normal_(0, 0.1)
    source.save_pretrained(tmp_path / "unet")
    target = build_model("tiny-prior", cameo_head="mean").eval()
    warm_start(target, tmp_path)
    sample, t, plucker, ref_mask = _model_inputs(source)
    with torch.no_grad():
        expected = source(sample, t, plucker, ref_mask)
        got = target(sample, t, plucker, ref_mask, None, torch.rand(2, 3, 4, 16, 16))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)  # new inputs start at zero


def test_views_prior_warps_references_into_targets_and_references_see_themselves():
    size = 16
    K, c2w = _cameras(3, size)
    depth = torch.full((1, size, size), 3.0)
    image = torch.rand(1, 3, size, size)
    mask = torch.tensor([True, False, False])
    prior = views_prior(image, depth, K[:1], c2w[:1], K, c2w, mask, size, size)
    assert prior.shape == (3, 4, size, size)
    torch.testing.assert_close(prior[0, :3], image[0])
    assert bool((prior[0, 3] == 1).all())
    near, far = float(prior[1, 3].mean()), float(prior[2, 3].mean())
    assert near > 0.9 and 0.5 < far < near  # the plane covers the nearer target; the farther one sees past its edge
    same = cloud_priors(fuse_depth(image, depth, K[:1], c2w[:1], max_points=10**7), K[:1], c2w[:1], size, size)
    torch.testing.assert_close(same[0, :3], image[0])  # a warp into the reference's own camera reproduces it
    without = views_prior(image, None, K[:1], c2w[:1], K, c2w, mask, size, size)
    assert float(without[1:].abs().sum()) == 0.0 and bool((without[0, 3] == 1).all())
    own = set_reference_priors(torch.zeros(3, 4, size, size), torch.rand(3, 3, size, size), mask)
    assert bool((own[0, 3] == 1).all()) and float(own[1:].abs().sum()) == 0.0


def test_degraded_depth_has_holes_and_noise_but_stays_close():
    depth = torch.full((2, 32, 32), 2.0)
    depth[:, 8:24, 8:24] = 1.0  # a box in front: its edges are discontinuities
    out = degrade_depth(depth, PriorConfig(), torch.Generator().manual_seed(0))
    valid = torch.isfinite(out)
    assert 0.4 < float(valid.float().mean()) < 1.0
    edge = torch.zeros_like(depth, dtype=torch.bool)
    edge[:, 7:9, 7:25] = True
    assert float(valid[edge].float().mean()) < 0.5  # most edge pixels dropped
    rel = (out[valid] / depth[valid] - 1).abs()
    assert float(rel.max()) < 0.1 and float(rel.mean()) > 0


def test_covisible_depth_keeps_what_another_reference_sees():
    size = 32
    K, _ = _cameras(2, size)
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[1, 0, 3] = 1.0  # a sideways pair facing a wall at z = 3: the second camera misses the first one's left part
    depth = torch.full((2, size, size), 3.0)
    kept = covisible_depth(depth, K, c2w)
    seen = torch.isfinite(kept[0])
    assert 0.2 < float(seen.float().mean()) < 0.9  # part of the first view lies outside the second's frame
    assert not bool(seen[:, : size // 4].any()) and bool(seen[:, -size // 4:].all())  # seen: the right part only
    torch.testing.assert_close(kept[torch.isfinite(kept)], depth[torch.isfinite(kept)])
    assert not bool(torch.isfinite(covisible_depth(depth[:1], K[:1], c2w[:1])).any())  # alone: stereo sees nothing


def _one_reference_batch(b: int, f: int, size: int) -> tuple[dict, torch.Tensor]:
    """A training batch of ``b`` samples of ``f`` views facing a wall at depth 3, the first view the reference."""
    K, c2w = _cameras(f, size)
    batch = {"images": torch.rand(b, f, 3, size, size), "depth": torch.full((b, f, size, size), 3.0),
             "K": K.expand(b, -1, -1, -1), "c2w": c2w.expand(b, -1, -1, -1)}
    ref_mask = torch.zeros(b, f, dtype=torch.bool)
    ref_mask[:, 0] = True
    return batch, ref_mask


def test_training_priors_covisible_empties_lone_references_and_keeps_old_streams():
    batch, ref_mask = _one_reference_batch(b=4, f=3, size=8)
    quiet = dict(drop_view=0.0, drop_batch=0.0, max_hole_share=0.0, max_noise=0.0)
    lone = training_priors(batch, ref_mask, PriorConfig(covisible=1.0, **quiet), torch.Generator().manual_seed(0))
    assert float(lone[:, 1:].abs().sum()) == 0.0 and bool((lone[:, 0, 3] == 1).all())
    full = training_priors(batch, ref_mask, PriorConfig(**quiet), torch.Generator().manual_seed(0))
    assert float(full[:, 1:, 3].mean()) > 0.5
    off = training_priors(batch, ref_mask, PriorConfig(covisible=0.0), torch.Generator().manual_seed(3))
    torch.testing.assert_close(off, training_priors(batch, ref_mask, PriorConfig(), torch.Generator().manual_seed(3)))


def test_training_priors_extrapolate_what_one_reference_alone_sees():
    """Two references 1 apart facing a wall at z = 3 and a target between them: cut to what both see, the target's
    edges (each seen by one reference only) get no prior; extrapolated, as stereo's holes are, they do."""
    size = 32
    K, _ = _cameras(3, size)
    c2w = torch.eye(4).repeat(3, 1, 1)
    c2w[:, 0, 3] = torch.tensor([0.0, 1.0, 0.5])
    batch = {"images": torch.rand(1, 3, 3, size, size), "depth": torch.full((1, 3, size, size), 3.0),
             "K": K[None], "c2w": c2w[None]}
    ref_mask = torch.tensor([[True, True, False]])
    quiet = dict(covisible=1.0, drop_view=0.0, drop_batch=0.0, max_hole_share=0.0, max_noise=0.0, edge_drop=0.0)
    cut = training_priors(batch, ref_mask, PriorConfig(**quiet), torch.Generator().manual_seed(0))
    grown = training_priors(batch, ref_mask, PriorConfig(extrapolate=True, **quiet), torch.Generator().manual_seed(0))
    edges = torch.cat([cut[0, 2, 3, :, :5], cut[0, 2, 3, :, -5:]])
    assert float(edges.max()) == 0.0 and bool((cut[0, 2, 3, :, 8:24] == 1).all())
    assert bool((grown[0, 2, 3] == 1).all())
    torch.testing.assert_close(grown[0, 2, :3, :, 8:24], cut[0, 2, :3, :, 8:24])


def test_training_priors_dropout_rates():
    batch, ref_mask = _one_reference_batch(b=64, f=4, size=8)
    cfg = PriorConfig(depth="gt", drop_view=0.5, drop_batch=0.0)
    prior = training_priors(batch, ref_mask, cfg, torch.Generator().manual_seed(1))
    assert bool((prior[:, 0, 3] == 1).all())  # references are never dropped per view
    kept = (prior[:, 1:, 3].flatten(2).amax(-1) > 0).float().mean()
    assert 0.35 < float(kept) < 0.65
    all_dropped = training_priors(batch, ref_mask, PriorConfig(depth="gt", drop_batch=1.0),
                                  torch.Generator().manual_seed(1))
    assert float(all_dropped.abs().sum()) == 0.0
    with pytest.raises(ValueError, match="needs depth"):
        training_priors({k: v for k, v in batch.items() if k != "depth"}, ref_mask, cfg, torch.Generator())


def test_sample_views_with_reference_depth_runs_for_prior_model():
    from cameo.model.codec import PixelCodec
    from cameo.sampling import sample_views

    size = 16
    model = build_model("tiny-prior", cameo_head="mean").eval()
    K, c2w = _cameras(3, size)
    images = torch.rand(2, 3, size, size)
    depth = torch.full((2, size, size), 3.0)
    out = sample_views(model, PixelCodec(), images, K[:2], c2w[:2], K[2:], c2w[2:], steps=2, ref_depth=depth)
    assert out.shape == (1, 3, size, size) and math.isfinite(float(out.sum()))


def test_sample_views_takes_the_references_cloud_instead_of_their_depth():
    from cameo.model.codec import PixelCodec
    from cameo.sampling import sample_views

    size = 16
    model = build_model("tiny-prior", cameo_head="mean").eval()
    K, c2w = _cameras(3, size)
    images, depth = torch.rand(2, 3, size, size), torch.full((2, size, size), 3.0)
    depth[:, :, :5] = float("nan")
    args = (model, PixelCodec(), images, K[:2], c2w[:2], K[2:], c2w[2:])
    from_depth = sample_views(*args, steps=2, seed=3, ref_depth=depth)
    cloud = fuse_depth(images, depth, K[:2], c2w[:2], max_points=depth.numel())
    torch.testing.assert_close(sample_views(*args, steps=2, seed=3, cloud=cloud), from_depth)
    assert float((sample_views(*args, steps=2, seed=3) - from_depth).abs().max()) > 0  # the cloud is read
    with pytest.raises(ValueError, match="not both"):
        sample_views(*args, steps=1, ref_depth=depth, cloud=cloud)


def test_full_anchor_keeps_the_prior_where_valid_and_leaves_holes_to_the_model():
    from cameo.model.codec import PixelCodec
    from cameo.sampling import sample_views

    size = 16
    K, c2w = _cameras(3, size)
    images, depth = torch.rand(2, 3, size, size), torch.full((2, size, size), 3.0)
    depth[:, :, :6] = float("nan")  # holes: the model alone decides there
    prior = cloud_priors(fuse_depth(images, depth, K[:2], c2w[:2], max_points=10**7), K[2:], c2w[2:], size, size)[0]
    valid = prior[3] > 0
    assert 0.2 < float(valid.float().mean()) < 0.95
    for name in ("tiny-prior", "tiny"):  # any model, given depth: the anchor needs only the prior
        model = build_model(name, cameo_head="mean").eval()
        kwargs = dict(steps=3, ref_depth=depth, seed=1)
        free = sample_views(model, PixelCodec(), images, K[:2], c2w[:2], K[2:], c2w[2:], **kwargs)[0]
        held = sample_views(model, PixelCodec(), images, K[:2], c2w[:2], K[2:], c2w[2:], anchor=1.0, **kwargs)[0]
        torch.testing.assert_close(held[:, valid], prior[:3, valid].clamp(0, 1), atol=1e-4, rtol=0)
        assert float((free[:, valid] - prior[:3, valid]).abs().mean()) > 0.05  # unanchored: the model's own pixels
        assert float((held[:, ~valid] - free[:, ~valid]).abs().max()) > 0  # the holes see the anchored context
    with pytest.raises(ValueError, match="anchor"):
        sample_views(model, PixelCodec(), images, K[:2], c2w[:2], K[2:], c2w[2:], steps=1, ref_depth=depth, anchor=2.0)


def test_pixel_codec_anchor_holds_every_valid_pixel_also_on_partly_covered_blocks():
    from cameo.model.codec import PixelCodec
    from cameo.priors import prior_anchor

    prior = torch.rand(1, 2, 4, 8, 8)
    valid = torch.zeros(8, 8)
    valid[:, :3] = 1  # columns 0-2: the 2x2 blocks of columns 2-3 are half valid
    prior[:, :, 3] = valid
    codec = PixelCodec(factor=2)
    anchor = prior_anchor(codec, prior, 1.0)
    assert anchor.mask.shape == (1, 2, 12, 4, 4)
    held = codec.decode(anchor.mask * anchor.latents + (1 - anchor.mask) * codec.encode(torch.zeros(1, 2, 3, 8, 8)))
    torch.testing.assert_close(held[..., :3], prior[:, :, :3, :, :3])  # every valid pixel, column 2 included
    assert float(held[..., 3:].abs().max()) == 0.0  # invalid pixels are left to the model


def test_training_priors_proxy_gives_lone_references_the_plane_through_the_look_at_point():
    """One reference facing a wall at depth 3 and cameras aimed at its centre: the look-at plane is the wall, so the
    proxy prior shows what exact depth shows, at mask 0.5 instead of 1; references with depth get no proxy."""
    batch, ref_mask = _one_reference_batch(b=2, f=3, size=16)
    quiet = dict(drop_view=0.0, drop_batch=0.0, max_hole_share=0.0, max_noise=0.0, edge_drop=0.0)
    proxy = training_priors(batch, ref_mask, PriorConfig(covisible=1.0, proxy=True, **quiet),
                            torch.Generator().manual_seed(0))
    exact = training_priors(batch, ref_mask, PriorConfig(depth="gt", proxy=True, **quiet),
                            torch.Generator().manual_seed(0))
    shown = exact[:, 1:, 3] > 0
    assert float(shown.float().mean()) > 0.5 and bool((exact[:, 1:, 3][shown] == 1).all())  # depth: no proxy
    torch.testing.assert_close(proxy[:, 1:, 3], 0.5 * exact[:, 1:, 3])
    torch.testing.assert_close(proxy[:, 1:, :3], exact[:, 1:, :3])
    torch.testing.assert_close(proxy[:, 0], exact[:, 0])  # the reference still sees itself at mask 1


def test_training_priors_depth_net_stand_in_warps_lone_references_at_full_mask():
    """``stand_in: depth_net``: a network predicting the look-at plane (the wall) gives a lone reference's targets
    exactly what exact depth gives, at mask 1; without the network the config is refused."""
    batch, ref_mask = _one_reference_batch(b=2, f=3, size=16)
    quiet = dict(drop_view=0.0, drop_batch=0.0, max_hole_share=0.0, max_noise=0.0, edge_drop=0.0)
    cfg = PriorConfig(covisible=1.0, proxy=True, stand_in="depth_net", **quiet)
    net = MonoDepthNet(widths=(8, 8)).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(1.0)  # disparity 1 everywhere: the plane through the look-at point
    estimated = training_priors(batch, ref_mask, cfg, torch.Generator().manual_seed(0), net)
    exact = training_priors(batch, ref_mask, PriorConfig(depth="gt", proxy=True, **quiet),
                            torch.Generator().manual_seed(0))
    assert float((exact[:, 1:, 3] > 0).float().mean()) > 0.5
    torch.testing.assert_close(estimated, exact)
    with pytest.raises(ValueError, match="depth network"):
        training_priors(batch, ref_mask, cfg, torch.Generator().manual_seed(0))


def test_add_proxy_fills_only_what_measured_depth_leaves_empty():
    size = 16
    K, c2w = _cameras(3, size)
    images = torch.rand(2, 3, size, size)
    depth = torch.full((2, size, size), 3.0)
    depth[:, :, : size // 2] = float("nan")
    ref_mask = torch.tensor([True, True, False])
    measured = views_prior(images, depth, K[:2], c2w[:2], K, c2w, ref_mask, size, size)
    both = add_proxy(measured, images, K[:2], c2w[:2], K, c2w, torch.tensor([False, True]))
    has = measured[:, 3] > 0
    torch.testing.assert_close(both[:, :, has[2]][2], measured[:, :, has[2]][2])
    added = both[2, 3][~has[2]]
    assert bool(((added == 0) | (added == PROXY_CONFIDENCE)).all()) and bool((added > 0).any())
    torch.testing.assert_close(add_proxy(measured, images, K[:2], c2w[:2], K, c2w, torch.tensor([False, False])),
                               measured)


def test_proxy_model_samples_a_lone_photo_with_the_proxy_and_anchors_only_measured_pixels():
    from cameo.model.codec import PixelCodec
    from cameo.priors import prior_anchor
    from cameo.sampling import sample_views

    size = 16
    K, c2w = _cameras(3, size)
    images = torch.rand(1, 3, size, size)
    plain = build_model("tiny-prior", cameo_head="mean").eval()
    _perturb_new_inputs(plain)
    proxied = build_model("tiny-prior", cameo_head="mean", prior_proxy=True).eval()
    proxied.load_state_dict(plain.state_dict())
    assert proxied.uses_proxy and not plain.uses_proxy
    args = (PixelCodec(), images, K[:1], c2w[:1], K[1:], c2w[1:])
    lone = [sample_views(m, *args, steps=2, seed=1) for m in (plain, proxied)]
    assert float((lone[0] - lone[1]).abs().max()) > 1e-4  # no depth: only the proxy model gets a prior
    depth = torch.full((1, size, size), 3.0)
    given = [sample_views(m, *args, steps=2, seed=1, ref_depth=depth) for m in (plain, proxied)]
    torch.testing.assert_close(given[0], given[1])  # with depth no proxy is added
    prior = torch.rand(1, 1, 4, size, size)
    prior[:, :, 3] = PROXY_CONFIDENCE
    prior[:, :, 3, : size // 2] = 1.0  # top half measured, bottom half proxy
    mask = prior_anchor(PixelCodec(), prior, 1.0).mask
    assert bool((mask[..., : size // 2, :] == 1).all()) and float(mask[..., size // 2 :, :].abs().sum()) == 0
    with pytest.raises(ValueError, match="prior_proxy"):
        build_model("tiny", prior_proxy=True)
