"""``attention`` scorer (FastV)."""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..registry import SCORERS
from .view import TokenView

QUERIES = ("last", "text")


def _check(*, query: str = "last") -> None:
    if query not in QUERIES:
        raise ConfigError(f"Stage.query: got {query!r}; allowed: {', '.join(QUERIES)}")


@SCORERS.register("attention")
def attention_scores(view: TokenView, *, query: str = "last") -> torch.Tensor:
    """FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024).

    score_v = mean_h softmax(q_h · K_hᵀ / √d)[v], with q from the last valid token (``query="last"``) or averaged over
    all text tokens that can attend to ``v`` (``query="text"``); q/k come from this stage's layer (input norm, q/k
    projections, per-head norms where the family has them, rotary/M-RoPE), the softmax runs over every unmasked key.
    Unlike FastV's reference code this never turns on eager attention or ``output_attentions``.
    """
    return view.attention(query)


attention_scores.check_options = _check  # type: ignore[attr-defined]
