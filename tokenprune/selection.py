"""Selectors: ``select(scores[V], features[V, D], k) -> LongTensor[k]`` sorted ascending (original order)."""
from __future__ import annotations

import torch

from .registry import SELECTORS


@SELECTORS.register("topk")
def topk(scores: torch.Tensor, features: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest scores (ties broken by lower index), returned in original order."""
    order = torch.argsort(scores.float(), descending=True, stable=True)
    return order[:k].sort().values
