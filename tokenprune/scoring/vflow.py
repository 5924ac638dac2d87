"""``vflow`` scorer (VFlowOpt): vision-tower attention from the "global" queries, plus an optional patch-entropy
(information) map; used before the LLM and again by the progressive in-LLM stages of the ``vflowopt`` preset."""
from __future__ import annotations

import torch

from ..registry import SCORERS, Option
from .view import TokenView

THRESHOLD = Option("threshold", float, 34.76, "a query is global when the attention it receives exceeds threshold x "
                   "the mean received attention (VFlowOpt's t; none qualify: every query counts)", low=0.0)


def global_query_attention(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """``probs [T, T]`` head-averaged attention (rows: queries) -> ``[T]``: the mean attention each token gets from
    the global queries ``G = {i : rcv_i > threshold · mean(rcv)}``, ``rcv_j = mean_i probs[i, j]`` (all queries when
    ``G`` is empty)."""
    rcv = probs.mean(0)
    g = rcv > threshold * rcv.mean()
    return probs[g].mean(0) if bool(g.any()) else rcv


def patch_entropy(grey: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """``grey [N, P]`` pixel values of ``N`` patches scaled to ``[0, 1]`` -> ``[N]`` Shannon entropy (bits) of each
    patch's ``bins``-bin histogram."""
    q = (grey.clamp(0, 1) * (bins - 1)).round().long()
    hist = torch.zeros(grey.shape[0], bins, device=grey.device).scatter_add_(1, q, torch.ones_like(grey))
    p = hist / hist.sum(1, keepdim=True)
    return -(torch.special.xlogy(p, p) / torch.log(torch.tensor(2.0))).sum(1)


@SCORERS.register("vflow", options=[
    THRESHOLD,
    Option("alpha", float, 0.0, "weight of the softmax of patch entropies added to the attention (VFlowOpt's alpha; "
           "0 in its released settings)", low=-1.0, high=1.0)],
    captures={"vision_global"})
def vflow_scores(view: TokenView, *, threshold: float = 34.76, alpha: float = 0.0) -> torch.Tensor:
    """VFlowOpt (Yang et al., ICCV 2025): s_j = mean over the global queries i of the vision layer's head-averaged
    attention Ā[i, j] + alpha · softmax_j(H_j), H_j the grey-level entropy of patch j; per item (see
    ``global_query_attention``). Captured once per image (before the LLM), so later in-LLM stages rank the surviving
    tokens by the same map, as VFlowOpt's progressive stages do."""
    out = torch.zeros(view.visual_mask.shape, dtype=torch.float32, device=view.hidden.device)
    for r, m in view.item_masks():
        idx = m.nonzero().squeeze(1)
        stats = view.vision_flow(r, int(view.item_id[r, idx[0]]))
        s = stats["global"].float()
        if alpha:
            s = s + alpha * stats["entropy"].float().softmax(-1)
        out[r, idx] = s.to(out.device)
    return out
