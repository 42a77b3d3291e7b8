"""Correspondence precision (Probe3D protocol), attention capture of a pair, and the attention picture."""

import copy

import pytest
import torch
import torch.nn.functional as F

from cameo.eval.attention_viz import attended_points, draw_attention, query_lattice
from cameo.eval.probe3d import (ViewTokens, attention_precision, correspondence_precision, match_descriptors,
                                probe_pair, relative_rotation_deg, rotation_bin, scale_relative_threshold)


def test_match_descriptors_recovers_permutation_and_ratio():
    g = torch.Generator().manual_seed(0)
    key = torch.randn(50, 16, generator=g)
    perm = torch.randperm(50, generator=g)
    index, ratio = match_descriptors(key[perm] * 3.0, key, chunk=7)  # cosine: scale-invariant, chunking exact
    assert torch.equal(index, perm)
    assert torch.allclose(ratio, torch.ones(50), atol=1e-4)  # exact matches: D(p, q0) = 0 -> r = 1


def _shifted_scene(shift: int, size: int = 32):
    """Two views of a plane: view 2 is view 1 shifted by ``shift`` rows (same 3D points move with it)."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(size + shift).float(), torch.arange(size).float(), indexing="ij")
    points = torch.stack([xx, yy, torch.ones_like(xx)]) * 0.01  # 1 cm per pixel
    feats = F.avg_pool2d(torch.randn(1, 8, size + shift, size, generator=g), 3, 1, 1)[0]
    pq = points[:, :size].clone()
    pq[:, :shift] = float("nan")  # rows of view 1 that view 2 does not see: no valid query there
    return feats[:, :size], feats[:, shift:], pq, points[:, shift:]


def test_precision_perfect_for_true_descriptors_and_low_for_random():
    dq, dk, pq, pk = _shifted_scene(shift=5)
    good = correspondence_precision(dq, dk, pq, pk, threshold=0.02, grid=32, top_k=1000)
    assert good.precision == 1.0 and good.num_matches == 32 * 27
    rand = torch.randn(dk.shape, generator=torch.Generator().manual_seed(2))
    bad = correspondence_precision(dq, rand, pq, pk, threshold=0.02, grid=32, top_k=1000)
    assert bad.precision < 0.2
    few = correspondence_precision(dq, dk, pq, pk, threshold=0.02, grid=32, top_k=100)
    assert few.num_matches == 100 and few.precision == 1.0


def test_attention_precision_reads_the_argmax_of_logits():
    _, _, pq, pk = _shifted_scene(shift=8)  # 32x32 pixels; a 4x4 token grid: one token = 8 px = 1 token row shift
    tokens = 16
    rows = torch.arange(tokens)
    true_key = (rows - 4).clamp_min(0)  # query token (r, c) sees key token (r - 1, c): index - 4
    logits = torch.full((tokens, tokens), -5.0)
    logits[rows, true_key] = 5.0
    res = attention_precision(logits, pq, pk, threshold=0.02)
    assert res.num_matches == 12 and res.precision == 1.0  # the first token row has no surface in view 2
    wrong = attention_precision(logits.roll(1, dims=1), pq, pk, threshold=0.02)
    assert wrong.precision == 0.0
    with pytest.raises(ValueError, match="square token grid"):
        attention_precision(torch.zeros(6, 6), pq, pk, threshold=0.02)


def test_precision_ignores_queries_without_surface():
    dq, dk, pq, pk = _shifted_scene(shift=3)
    pq = pq.clone()
    pq[:, :, :16] = float("nan")
    res = correspondence_precision(dq, dk, pq, pk, threshold=0.02, grid=32, top_k=10_000)
    assert res.num_matches == 29 * 16 and res.precision == 1.0


def test_rotation_angle_bins_and_relative_threshold():
    c2w = torch.eye(4).repeat(2, 1, 1)
    angle = torch.deg2rad(torch.tensor(45.0))
    c2w[1, :3, :3] = torch.tensor([[angle.cos(), 0, angle.sin()], [0, 1, 0], [-angle.sin(), 0, angle.cos()]])
    assert relative_rotation_deg(c2w[0], c2w[1]).item() == pytest.approx(45.0, abs=1e-3)
    assert rotation_bin(45.0) == "30-60" and rotation_bin(0.0) == "0-30" and rotation_bin(180.0) == "120-180"
    points = torch.zeros(3, 4, 4)
    points[2] = 2.0
    assert scale_relative_threshold(points, torch.eye(4), 0.01) == pytest.approx(0.02)


@pytest.fixture(scope="module")
def tiny():
    from cameo.model import build_codec, build_model

    torch.manual_seed(0)
    return build_model("tiny").eval(), build_codec("tiny")


def test_probe_pair_slices_query_and_key_views(tiny):
    model, codec = tiny
    g = torch.Generator().manual_seed(3)
    key_img, q1, q2 = torch.rand(3, 3, 16, 16, generator=g)
    layers = [model.self_attention_layers[0], model.multiview_layers[0], "mid_block.attentions.0.transformer_blocks.0.attn1"]
    a, b = probe_pair(model, codec, q1, key_img, layers), probe_pair(model, codec, q2, key_img, layers)
    assert a[layers[0]].token_hw == (16, 16) and a[layers[1]].token_hw == (8, 8) and a[layers[2]].token_hw == (2, 2)
    for name in layers[:2]:  # before any cross-view mixing: k of the key view ignores the query image
        assert torch.allclose(a[name].k_key, b[name].k_key, atol=1e-6)
        assert not torch.allclose(a[name].q_query, b[name].q_query, atol=1e-4)
    dq, dk = a[layers[1]].descriptors()
    assert dq.shape == dk.shape == (a[layers[1]].q_query.shape[0] * a[layers[1]].q_query.shape[2], 8, 8)
    assert torch.allclose(a[layers[1]].cross_attention().sum(-1), torch.ones(64), atol=1e-5)


def test_probe_pair_with_cameras_changes_the_tokens_of_later_layers(tiny):
    model, codec = copy.deepcopy(tiny[0]), tiny[1]
    torch.nn.init.normal_(model.camera_encoder.zero_out.weight, std=0.1)  # a trained encoder is not zero
    key_img, query_img = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    layer = model.multiview_layers[0]
    rays = torch.randn(2, 6, 16, 16, generator=torch.Generator().manual_seed(5))
    dropped = probe_pair(model, codec, query_img, key_img, [layer])[layer]
    assert torch.equal(dropped.q_query, probe_pair(model, codec, query_img, key_img, [layer], None)[layer].q_query)
    with_cams = probe_pair(model, codec, query_img, key_img, [layer], rays)[layer]
    assert not torch.allclose(dropped.q_query, with_cams.q_query, atol=1e-4)
    assert dropped.logits().shape == (dropped.q_query.shape[0], 64, 64)


def test_attention_picture_points_follow_argmax():
    eye = torch.eye(16)[None] * 50.0  # one head, 4x4 tokens, q = k = one-hot: each token attends to itself
    tokens = ViewTokens(eye, eye, (4, 4), 1.0)
    query = query_lattice(torch.ones(32, 32, dtype=torch.bool), count=4)
    attended = attended_points(tokens, query, (32, 32))
    assert (attended - query).abs().max() <= 0.5  # the attended token is the query's own token
    picture = draw_attention(torch.rand(3, 32, 32), torch.rand(3, 32, 32), query, attended, scale=2, title="x")
    assert picture.size == (2 * 64 + 4, 64 + 14)
