"""``cls_attention`` scorer (VisionZip / FasterVLM): the vision tower's [CLS]→patch attention."""
from __future__ import annotations

import torch

from ..registry import SCORERS
from .view import TokenView


@SCORERS.register("cls_attention")
def cls_attention_scores(view: TokenView) -> torch.Tensor:
    """VisionZip (Yang et al., CVPR 2025) / FasterVLM: score_v = mean_h softmax(q_cls · Kᵀ · d^-½)[v] at the vision
    layer whose output the projector consumes (``vision_feature_layer``), computed from that layer's own q/k on its
    input hidden states (the tower keeps SDPA). Query-free: usable before the LLM and inside vLLM."""
    return view.vision_attention()


cls_attention_scores.captures = lambda **_: {"vision_attention"}  # type: ignore[attr-defined]
