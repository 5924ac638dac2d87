"""``text_relevance`` scorer: how well each visual token matches the prompt's text (CDPruner's relevance)."""
from __future__ import annotations

import torch

from ..registry import SCORERS, Option
from .view import TokenView

TEXT = Option("text", str, "after", "text tokens compared with: 'after' the row's last visual token (the question "
              "and what follows), or 'all' non-visual tokens", choices=("after", "all"))
NEGATE = Option("negate", bool, True, "score the negated mean similarity, as CDPruner's released code does")


@SCORERS.register("text_relevance", options=[TEXT, NEGATE], captures={"features"}, query_dependent=True)
def text_relevance(view: TokenView, *, text: str = "after", negate: bool = True) -> torch.Tensor:
    """CDPruner's relevance (Zhang et al., NeurIPS 2025): the mean cosine similarity between a visual token and the
    instruction's tokens, min-max normalised per row to ``(0, 1]`` (``(r − min + 1e−6) / (max − min)``). The released
    code compares CLIP image and text embeddings and negates the mean before normalising (``negate``); here both
    sides are the stage's hidden states (before the LLM: projected visual features and the LLM's text embeddings),
    since HF VLMs carry no CLIP text tower. Rows without text score 1 everywhere."""
    feats = torch.nn.functional.normalize(view.features.float(), dim=-1)
    hidden = torch.nn.functional.normalize(view.hidden.float(), dim=-1)
    mask = view.text_mask
    if text == "after":
        last = torch.where(view.visual_mask, view.visual_index, torch.full_like(view.visual_index, -1)).amax(1)
        pos = torch.arange(mask.shape[1], device=mask.device)
        mask = mask & (pos[None] > last[:, None])
    sim = torch.einsum("bvd,bnd->bvn", feats, hidden)
    n = mask.sum(1, keepdim=True)
    rel = (sim * mask[:, None, :]).sum(-1) / n.clamp(min=1)
    rel = -rel if negate else rel
    big = torch.finfo(rel.dtype).max
    lo = torch.where(view.visual_mask, rel, torch.full_like(rel, big)).amin(1, keepdim=True)
    hi = torch.where(view.visual_mask, rel, torch.full_like(rel, -big)).amax(1, keepdim=True)
    out = (rel - lo + 1e-6) / (hi - lo).clamp(min=1e-12)
    out = torch.where(n > 0, out, torch.ones_like(out))
    return out.masked_fill(~view.visual_mask, 0.0)
