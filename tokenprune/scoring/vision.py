"""``cls_attention`` scorer (VisionZip / FasterVLM): the vision tower's [CLS]→patch attention."""
from __future__ import annotations

import torch

from ..registry import SCORERS
from .view import TokenView


@SCORERS.register("cls_attention", captures={"vision_attention"})
def cls_attention_scores(view: TokenView) -> torch.Tensor:
    """VisionZip (Yang et al., CVPR 2025) / FasterVLM: score_v = mean_h softmax(q_cls · Kᵀ · d^-½)[v] at the vision
    layer whose output the projector consumes (``vision_feature_layer``), from that layer's own q/k projections
    (captured by forward hooks during the tower's forward, so the tower keeps SDPA; recomputed from its hidden states
    when the features were computed outside the handle). Query-free: usable before the LLM and inside vLLM."""
    return view.vision_attention()



def cls_row_attention(q_cls: torch.Tensor, k: torch.Tensor, num_heads: int, scale: float) -> torch.Tensor:
    """``[n, T]``: the [CLS] query's attention over the ``T`` tokens of each of ``n`` images, softmax(q·Kᵀ·scale)
    averaged over heads, in float32; ``q_cls`` ``[n, 1, E]`` and ``k`` ``[n, T, E]`` are projection outputs.
    Shared by the HF adapter and the vLLM plugin so that both score identically."""
    n, t, e = k.shape
    d = e // num_heads
    q = q_cls.reshape(n, 1, num_heads, d).transpose(1, 2).float()
    k = k.reshape(n, t, num_heads, d).transpose(1, 2).float()
    return (q @ k.transpose(-1, -2) * scale).softmax(-1).mean(1)[:, 0]
