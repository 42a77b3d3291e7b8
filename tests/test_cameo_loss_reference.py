"""CAMEO loss: equality with a slow explicit reference, masking, gradients, toy optimisation."""

from __future__ import annotations

import pytest
import torch

from cameo.cameo_loss import AttentionLogitHead, cameo_loss
from cameo.model import CAMEO_DEFAULT_LAYER, build_model
from cameo.model.attention import CapturedAttention


pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_loss(cap: CapturedAttention, index, valid, head: AttentionLogitHead, loss: str) -> torch.Tensor:
    """Straightforward definition: full attention logits [B,h,F*L,F*L], loops over samples, view pairs, queries."""
    logits = cap.logits().double()
    b, h, n, _ = logits.shape
    f = cap.num_views
    length = n // f
    terms = []
    for s in range(b):
        for i in range(f):
            for j in range(f):
                if i == j:
                    continue
                block = logits[s, :, i * length : (i + 1) * length, j * length : (j + 1) * length]  # [h, L, L]
                if head.kind == "mlp":
                    scores = head.reduce(torch.nn.functional.gelu(head.expand.double()(block.permute(1, 2, 0)))).squeeze(-1)
                else:
                    scores = block.mean(0)
                probs = scores.softmax(-1)
                for x in range(length):
                    if not valid[s, i, j, x]:
                        continue
                    onehot = torch.zeros(length, dtype=torch.float64)
                    onehot[index[s, i, j, x]] = 1.0
                    if loss == "ce":
                        terms.append(-(onehot * probs[x].log()).sum())
                    else:
                        terms.append((probs[x] - onehot).abs().sum())
    return torch.stack(terms).mean()


def _case(seed: int = 0, b: int = 2, h: int = 3, f: int = 3, length: int = 16, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, f * length, d, generator=g, dtype=torch.float64).float().requires_grad_()
    k = torch.randn(b, h, f * length, d, generator=g, dtype=torch.float64).float().requires_grad_()
    cap = CapturedAttention(q, k, k, d**-0.5, f, True)
    index = torch.randint(0, length, (b, f, f, length), generator=g)
    valid = torch.rand(b, f, f, length, generator=g) < 0.6
    valid &= ~torch.eye(f, dtype=torch.bool)[None, :, :, None]
    return cap, index, valid


@pytest.mark.parametrize("kind,loss", [("mlp", "ce"), ("mean", "ce"), ("mlp", "l1")])
def test_matches_slow_reference(kind: str, loss: str) -> None:
    torch.manual_seed(0)
    cap, index, valid = _case()
    head = AttentionLogitHead(cap.q.shape[1], kind)
    if kind == "mlp":
        head.double()
        reference = _reference_loss(cap, index, valid, head, loss)
        head.float()
    else:
        reference = _reference_loss(cap, index, valid, head, loss)
    fast = cameo_loss(cap, index, valid, head, loss=loss)
    torch.testing.assert_close(fast.double(), reference, atol=1e-5, rtol=1e-5)


def test_chunked_checkpointed_path_is_exact() -> None:
    cap, index, valid = _case(seed=1)
    head = AttentionLogitHead(cap.q.shape[1])
    whole = cameo_loss(cap, index, valid, head)
    grads_whole = torch.autograd.grad(whole, [cap.q, cap.k, *head.parameters()])
    chunked = cameo_loss(cap, index, valid, head, max_chunk_elements=1)  # one query token per chunk + recompute
    grads_chunked = torch.autograd.grad(chunked, [cap.q, cap.k, *head.parameters()])
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)
    for a, b in zip(grads_chunked, grads_whole):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    sampled = cameo_loss(cap, index, valid, head, query_samples=index.shape[-1])  # all tokens = exact
    torch.testing.assert_close(sampled, whole)


def test_masked_queries_are_ignored() -> None:
    cap, index, valid = _case(seed=2)
    head = AttentionLogitHead(cap.q.shape[1])
    scrambled = torch.where(valid, index, (index + 5) % index.shape[-1])
    torch.testing.assert_close(cameo_loss(cap, scrambled, valid, head), cameo_loss(cap, index, valid, head))
    changed = torch.where(valid, (index + 5) % index.shape[-1], index)
    assert not torch.allclose(cameo_loss(cap, changed, valid, head), cameo_loss(cap, index, valid, head))
    none_valid = cameo_loss(cap, index, torch.zeros_like(valid), head)
    assert none_valid.item() == 0.0 and none_valid.requires_grad


def test_rejects_mismatched_correspondences() -> None:
    cap, index, valid = _case()
    with pytest.raises(ValueError, match="correspondences must be"):
        cameo_loss(cap, index[..., :-1], valid[..., :-1], AttentionLogitHead(cap.q.shape[1]))


def _tiny_batch(seed: int = 0, f: int = 3):
    g = torch.Generator().manual_seed(seed)
    ref = torch.zeros(1, f, dtype=torch.bool)
    ref[:, 0] = True
    return (torch.randn(1, f, 3, 16, 16, generator=g), torch.full((1, f), 500).masked_fill(ref, 0),
            torch.randn(1, f, 6, 16, 16, generator=g), ref)


def _identity_correspondence(f: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token x of view i matches token x of every other view (e.g. static camera), all visible."""
    index = torch.arange(length).expand(1, f, f, length).clone()
    valid = ~torch.eye(f, dtype=torch.bool)[None, :, :, None].expand(1, f, f, length)
    return index, valid


def test_gradients_reach_layer_projections_and_head() -> None:
    torch.manual_seed(0)
    model = build_model("tiny")
    batch = _tiny_batch()
    with model.attention_control(capture=[CAMEO_DEFAULT_LAYER]) as control:
        model(*batch)
    cap = control.store[CAMEO_DEFAULT_LAYER]
    index, valid = _identity_correspondence(cap.num_views, cap.q.shape[2] // cap.num_views)
    cameo_loss(cap, index, valid, model.cameo_head).backward()
    attn = model.unet.get_submodule(CAMEO_DEFAULT_LAYER)
    for param in (attn.to_q.weight, attn.to_k.weight, attn.norm_q.weight, *model.cameo_head.parameters()):
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert attn.to_v.weight.grad is None  # v does not enter the logits


def test_toy_optimisation_aligns_attention_with_correspondence() -> None:
    torch.manual_seed(0)
    model = build_model("tiny")
    batch = _tiny_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        with model.attention_control(capture=[CAMEO_DEFAULT_LAYER]) as control:
            model(*batch)
        cap = control.store[CAMEO_DEFAULT_LAYER]
        length = cap.q.shape[2] // cap.num_views
        # Known correspondence: a horizontal flip of the 8x8 token grid between every pair of views.
        flip = torch.arange(length).reshape(8, 8).flip(1).flatten()
        index = flip.expand(1, cap.num_views, cap.num_views, length)
        valid = ~torch.eye(cap.num_views, dtype=torch.bool)[None, :, :, None].expand_as(index)
        loss = cameo_loss(cap, index, valid, model.cameo_head)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses[::5]
