"""generate_trajectory: plan validation, coverage, batching invariance, progress."""

from types import SimpleNamespace as NS

import pytest
import torch
from torch import nn

from cameo.cameras import look_at
from cameo.model.codec import PixelCodec
from cameo.sampling import generate_trajectory


class CountingModel(nn.Module):
    """Imperfect denoiser (0.5 x input) that records the reference layout of every forward."""

    def __init__(self):
        super().__init__()
        self.config = NS(prediction_type="epsilon")
        self.anchor = nn.Parameter(torch.zeros(1))
        self.calls = []

    def forward(self, sample, timesteps, plucker, ref_mask, drop_camera=None):
        self.calls.append(dict(ref_mask=ref_mask.clone(), sample=sample.clone(), drop=drop_camera))
        return 0.5 * sample


def _views(n: int):
    angles = torch.linspace(0, 2.0, n)
    eye = torch.stack([2 * angles.sin(), torch.zeros(n), -2 * angles.cos()], -1)
    c2w = look_at(eye, torch.zeros(n, 3), torch.tensor([0.0, -1.0, 0.0]).expand(n, 3))
    K = torch.tensor([[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]]).expand(n, 3, 3)
    return K, c2w


# 2 inputs (0, 1) + 6 path views (2..7): anchors 3 and 6 first, then the rest conditioned on inputs + anchors.
PLAN = NS(input_indices=(0, 1), passes=[
    [NS(cond=[0, 1], targets=[3, 6])],
    [NS(cond=[0, 3], targets=[2, 4]), NS(cond=[6, 1], targets=[5, 7])],
])


def _run(model, plan=PLAN, **kw):
    K, c2w = _views(8)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return generate_trajectory(model, PixelCodec(), images, K, c2w, plan,
                               steps=kw.pop("steps", 2), cfg=kw.pop("cfg", 2.0), seed=3, show_progress=False, **kw)


def test_trajectory_generates_every_path_view_once():
    model = CountingModel()
    out = _run(model, steps=1, cfg=1.0)
    assert out.shape == (8, 3, 8, 8)
    generated = sum(int((~call["ref_mask"]).sum()) for call in model.calls)
    assert generated == 6  # one step: each target is denoised exactly once
    assert len(model.calls) == 2  # pass 1, then both pass-2 groups batched in one forward


def test_trajectory_conditions_on_generated_anchors():
    model = CountingModel()
    out = _run(model, steps=1, cfg=1.0)
    anchors = model.calls[0]["sample"]  # pass 1: [1, 4, C, h, w] = inputs 0, 1 then noisy anchors 3, 6
    second = model.calls[1]["sample"]  # pass 2: groups (0, 3 | 2, 4) and (6, 1 | 5, 7)
    # the inputs reappear clean; the generated anchors 3 and 6 are reused as clean conditioning
    assert torch.equal(second[0, 0], anchors[0, 0]) and torch.equal(second[1, 1], anchors[0, 1])
    for seen, path_index in ((second[0, 1], 3), (second[1, 0], 6)):
        assert torch.allclose(PixelCodec().decode(seen), out[path_index], atol=1e-6)
    assert not torch.equal(second[0, 1], anchors[0, 2])  # no longer the initial noise: denoised in pass 1


@pytest.mark.parametrize("plan, message", [
    (NS(input_indices=(0, 1), passes=[[NS(cond=[0], targets=[2, 3, 4, 5, 6])]]), "ungenerated"),
    (NS(input_indices=(0, 1), passes=[[NS(cond=[0], targets=[2, 3, 4, 5, 6, 7])], [NS(cond=[0], targets=[2])]]), "repeated"),
    (NS(input_indices=(0, 1), passes=[[NS(cond=[0, 5], targets=[2, 3, 4, 5, 6, 7])]]), "not generated before"),
])
def test_trajectory_rejects_bad_plans(plan, message):
    with pytest.raises(ValueError, match=message):
        _run(CountingModel(), plan=plan)


def test_trajectory_batching_does_not_change_results_and_reports_progress():
    fractions = []
    a = _run(CountingModel(), groups_per_batch=1)
    b = _run(CountingModel(), groups_per_batch=4, progress=fractions.append)
    assert torch.allclose(a, b, atol=1e-6)
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_trajectory_draws_average_their_own_noise_and_keep_batching_invariance():
    fractions = []
    one = _run(CountingModel())
    a = _run(CountingModel(), groups_per_batch=1, draws=2)
    b = _run(CountingModel(), groups_per_batch=4, draws=2, progress=fractions.append)
    assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a[2:], one[2:])
    assert torch.equal(a[:2], one[:2])  # the inputs as given
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_trajectory_with_the_two_pass_anchor_plan():
    from trajectories.plan import plan_generation

    K, c2w = _views(12)
    plan = plan_generation(12, input_indices=(0, 11), frames_per_group=4, c2w=c2w)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    model = CountingModel()
    out = generate_trajectory(model, PixelCodec(), images, K, c2w, plan, steps=1, cfg=1.0, show_progress=False)
    assert torch.equal(out[[0, 11]], images)  # inputs returned as given
    assert sum(int((~call["ref_mask"]).sum()) for call in model.calls) == 10  # each target generated once


class PriorRecordingModel(CountingModel):
    """A prior-conditioned stand-in that records the prior of every forward; ``proxy``: trained with proxies."""

    def __init__(self, proxy: bool):
        super().__init__()
        self.uses_prior, self.uses_proxy = True, proxy

    def forward(self, sample, timesteps, plucker, ref_mask, drop_camera=None, prior=None):
        self.calls.append(dict(ref_mask=ref_mask.clone(), prior=prior.clone()))
        return 0.5 * sample


def test_trajectory_gives_inputs_without_depth_a_proxy_prior_only_for_proxy_models():
    shown = {}
    for proxy in (False, True):
        model = PriorRecordingModel(proxy)
        _run(model, steps=1, cfg=1.0)
        first = model.calls[0]
        shown[proxy] = first["prior"][~first["ref_mask"]][:, 3]  # the first pass's targets' masks
    assert float(shown[False].abs().sum()) == 0.0  # no cloud: an empty prior
    assert bool((shown[True] > 0).any()) and set(shown[True].unique().tolist()) <= {0.0, 0.5}


def test_trajectory_warps_inputs_without_depth_through_a_depth_network_as_measured_depth():
    """With the model folder's one-photo depth network even a model trained without proxies gets the inputs'
    pixels in its targets, at mask 1 (so the sampler anchors them)."""
    from cameo.geometry.mono_depth import MonoDepthNet

    net = MonoDepthNet(widths=(8, 8)).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(1.0)  # every pixel on the look-at plane
    model = PriorRecordingModel(False)
    _run(model, steps=1, cfg=1.0, depth_net=net)
    first = model.calls[0]
    shown = first["prior"][~first["ref_mask"]][:, 3]
    assert bool((shown > 0).any()) and set(shown.unique().tolist()) <= {0.0, 1.0}
