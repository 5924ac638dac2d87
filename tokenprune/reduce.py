"""Reducers: ``reduce(hidden[V, D], keep_idx[k], pruned_idx[V-k], scores[V], **options) -> [k, D]``.

They return the rows that replace the kept tokens of one image; the runtime then drops the pruned rows.
"""
from __future__ import annotations

import torch

from .registry import REDUCERS
from .selection import CONTEXTUAL


@REDUCERS.register("drop")
def drop(hidden: torch.Tensor, keep_idx: torch.Tensor, pruned_idx: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The kept rows unchanged: pruned tokens are discarded."""
    return hidden[keep_idx]


@REDUCERS.register("merge", options=[CONTEXTUAL])
def merge(hidden: torch.Tensor, keep_idx: torch.Tensor, pruned_idx: torch.Tensor, scores: torch.Tensor, *,
          contextual: int = 0) -> torch.Tensor:
    """Each pruned token joins its most similar kept token (cosine); a kept token becomes the weighted mean of its
    group with weights ``w = max(score, 1e-6)``, so ``Σ_groups W_g · merged_g = Σ_i w_i · x_i``. The merged token
    keeps the position of the kept token it replaces.

    ``contextual = c > 0`` (VisionZip, with the ``visionzip`` selector): pruned tokens join only the ``c`` lowest-
    scored kept tokens (the contextual centres) with equal weights; the dominant tokens stay unchanged."""
    kept = hidden[keep_idx]
    if pruned_idx.numel() == 0:
        return kept
    w = scores.float().clamp(min=1e-6)
    targets = torch.arange(keep_idx.numel(), device=hidden.device)
    if contextual > 0:
        c = min(contextual, keep_idx.numel())
        targets = torch.argsort(scores[keep_idx].float(), stable=True)[:c]  # the centres, as positions in keep_idx
        w = torch.ones_like(w)
    f = torch.nn.functional.normalize(hidden.float(), dim=-1)
    target = targets[(f[pruned_idx] @ f[keep_idx[targets]].T).argmax(1)]  # [V-k] -> index into keep_idx
    num = kept.float() * w[keep_idx, None]
    num = num.index_add(0, target, hidden[pruned_idx].float() * w[pruned_idx, None])
    den = w[keep_idx].index_add(0, target, w[pruned_idx])
    return (num / den[:, None]).to(hidden.dtype)

