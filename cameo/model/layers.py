"""Naming of the UNet's self-attention layers and the paper's layer numbering.

The paper counts "layer l" over all 16 self-attention layers of the SD2.1 topology in forward order
(down_blocks.0 .. down_blocks.2, mid_block, up_blocks.1 .. up_blocks.3). ``named_modules()`` lists the mid block
last, so the order is built here explicitly. Full module names are the stable key: small configurations may drop
attention at full resolution, which would shift any index.
"""

from __future__ import annotations

MULTIVIEW_BLOCKS: tuple[str, ...] = ("down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.1", "up_blocks.2")
"""Blocks whose self-attention is 3D in CAT3D/CAMEO (every width except the full-resolution 320 blocks)."""


def _attn1(block: str, index: int) -> str:
    return f"{block}.attentions.{index}.transformer_blocks.0.attn1"


SD21_SELF_ATTENTION_LAYERS: tuple[str, ...] = (
    *(_attn1(f"down_blocks.{b}", i) for b in range(3) for i in range(2)),
    _attn1("mid_block", 0),
    *(_attn1(f"up_blocks.{b}", i) for b in range(1, 4) for i in range(3)),
)
"""The 16 self-attention layers of SD2.1 in forward order; position = the paper's layer number."""

CAMEO_DEFAULT_LAYER: str = SD21_SELF_ATTENTION_LAYERS[10]
"""Layer 10 = up_blocks.2.attentions.0.transformer_blocks.0.attn1, the layer CAMEO supervises."""


def layer_name(index: int) -> str:
    """Full module name (relative to the diffusers UNet) of paper layer ``index`` (0..15)."""
    if not 0 <= index < len(SD21_SELF_ATTENTION_LAYERS):
        raise IndexError(f"layer index {index} outside 0..{len(SD21_SELF_ATTENTION_LAYERS) - 1}")
    return SD21_SELF_ATTENTION_LAYERS[index]


def layer_index(name: str) -> int:
    """Paper layer number of a full module name (inverse of :func:`layer_name`)."""
    try:
        return SD21_SELF_ATTENTION_LAYERS.index(name)
    except ValueError:
        raise KeyError(f"{name!r} is not a self-attention layer of the SD2.1 topology") from None


def is_multiview_layer(name: str) -> bool:
    """True if the layer belongs to a block whose self-attention is 3D."""
    return any(name.startswith(block + ".") for block in MULTIVIEW_BLOCKS)


def layer_downsample(name: str) -> int:
    """Factor between the latent and a layer's token grid (down_blocks.i: 2**i, mid: 8, up_blocks.i: 2**(3-i)).

    E.g. layer 10 (up_blocks.2) of a 64x64 latent has 32x32 tokens per view: pass ``latent // layer_downsample``
    as ``token_hw`` to ``token_correspondences``.
    """
    block, index = name.split(".")[:2]
    if block == "mid_block":
        return 8
    level = int(index)
    return 2**level if block == "down_blocks" else 2 ** (3 - level)
