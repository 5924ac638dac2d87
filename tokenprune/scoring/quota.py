"""``frame_quota`` scorer (QuoTA-style query-aware frame budgets) for video items."""
from __future__ import annotations

import torch

from ..registry import SCORERS, Option
from .attention import QUERY_OPTION
from .view import TokenView


def allocate(relevance: torch.Tensor, budget: int, cap: torch.Tensor) -> torch.Tensor:
    """Integer budgets per frame proportional to ``relevance`` (largest remainder), each at most ``cap[f]``, summing
    to ``min(budget, cap.sum())``."""
    total = min(int(budget), int(cap.sum()))
    share = relevance.clamp(min=0).double()
    share = share / share.sum() if share.sum() > 0 else torch.full_like(share, 1.0 / share.numel())
    k = torch.zeros_like(cap)
    left, free = total, cap.clone()
    while left > 0:
        active = free > 0
        want = share * active
        want = want / want.sum() * left if want.sum() > 0 else active.double() / active.sum() * left
        base = torch.minimum(want.floor().long(), free)
        if int(base.sum()) == 0:  # hand out the remainder one by one, largest fraction first
            order = torch.argsort(want - want.floor(), descending=True, stable=True)
            for f in order.tolist():
                if left == 0:
                    break
                if free[f] > 0:
                    k[f] += 1
                    free[f] -= 1
                    left -= 1
            continue
        k += base
        free -= base
        left -= int(base.sum())
    return k


@SCORERS.register("frame_quota", options=[QUERY_OPTION, Option(
    "sharpness", float, 1.0, "exponent on frame relevance before the budget is split (0: equal budgets)", low=0.0)],
    captures={"lm_attention"}, query_dependent=True)
def frame_quota_scores(view: TokenView, *, query: str = "last", sharpness: float = 1.0) -> torch.Tensor:
    """QuoTA-style: a video item's budget ``k`` is split over its frames (temporal patches) in proportion to their
    relevance to the query — the mean text→visual attention of the frame's tokens (this stage's layer, or layer 0
    before the LLM) raised to ``sharpness`` — by largest remainder; inside each frame the ``k_f`` most-attended tokens
    score ``2 + a`` (above every other token, so ``topk`` keeps exactly them) and the rest score their attention
    ``a ∈ [0, 1]``. Items without frames (images) rank by attention alone."""
    att = view.attention(query).float()
    out = att.clone()
    frame = view.frame if view.frame is not None else torch.zeros_like(view.local_index)
    for r, m in view.item_masks():
        idx = m.nonzero().squeeze(1)
        f = frame[r, idx]
        frames = torch.unique(f)
        if frames.numel() < 2:
            continue
        a = att[r, idx]
        rel = torch.stack([a[f == g].mean() for g in frames]) ** sharpness
        cap = torch.stack([(f == g).sum() for g in frames])
        ks = allocate(rel, int(view.budget[r, idx[0]]), cap)
        for g, kg in zip(frames.tolist(), ks.tolist()):
            sel = (f == g).nonzero().squeeze(1)
            top = sel[torch.argsort(a[sel], descending=True, stable=True)[:kg]]
            out[r, idx[top]] = 2.0 + a[top]
    return out
