"""``attention`` scorer (FastV)."""
from __future__ import annotations

import torch

from ..registry import SCORERS, Option
from .view import TokenView

QUERIES = ("last", "text", "prior")
QUERY_OPTION = Option("query", str, "last", "query tokens: the last valid token, every text token, or the text after "
                      "the image weighted by its text-to-text attention prior (AdaptInfer)", choices=QUERIES)


KEYS_OPTION = Option("keys", str, "all", "softmax over every key the query sees (FastV) or over the visual keys "
                     "only (AngelSlim's FastV variant)", choices=("all", "visual"))


@SCORERS.register("attention", options=[QUERY_OPTION, KEYS_OPTION], captures={"lm_attention"}, query_dependent=True)
def attention_scores(view: TokenView, *, query: str = "last", keys: str = "all") -> torch.Tensor:
    """FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024).

    score_v = mean_h softmax(q_h · K_hᵀ / √d)[v] of layer ``K − 1`` for a stage at layer ``K`` (FastV prunes after the
    layer whose attention map it reads), with q from the last valid token (``query="last"``) or averaged over all text
    tokens that can attend to ``v`` (``query="text"``); ``query="prior"``: AdaptInfer's text-prior weighting
    (:func:`tokenprune.runtime.attention.text_prior_scores`). Keys are read from layer K−1's KV cache (no recomputation;
    recomputed when there is no cache), queries from its input (norm, q projection, per-head norm where the family has
    one, rotary/M-RoPE); the softmax runs over every unmasked key (``keys="all"``, FastV) or over the visual keys only
    (``keys="visual"``: each head's distribution over the image, so heads that look mostly at text or sink tokens
    weigh as much as the others — the variant AngelSlim ships as FastV). Before the LLM (and at ``K = 0``) layer 0's
    q/k on the stage's input are used. Unlike FastV's reference code this never turns on eager attention or
    ``output_attentions``.
    """
    return view.attention(query, keys)

