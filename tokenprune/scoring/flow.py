"""``flowcut`` scorer (FlowCut): information flow through the vision tower, accumulated over its layers, with
FlowCut's progressive, entropy-adaptive narrowing of the candidate set."""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..registry import SCORERS, Option
from .view import TokenView


def _attention(stats: dict[str, torch.Tensor], name: str, layer: int, alive: torch.Tensor) -> torch.Tensor | None:
    """``[|S|]`` attention over the surviving tokens: from per-head logits with the [CLS] column (softmax over
    [CLS] + survivors per head, mean over heads, [CLS] dropped) or from given probabilities."""
    if f"{name}_logit" in stats:
        logits = torch.cat([stats[f"{name}_self"][layer][:, :1], stats[f"{name}_logit"][layer][:, alive]], -1)
        return logits.float().softmax(-1)[:, 1:].mean(0)
    return stats[name][layer, alive].float() if name in stats else None


def flowcut_ranks(stats: dict[str, torch.Tensor], k: int, progressive: bool = True) -> torch.Tensor:
    """``[T]`` scores whose top ``k`` are FlowCut's kept tokens, from per-layer statistics (``vnorm`` ``[L, T]``;
    ``rel``/``sem`` as ``[L, T]`` probabilities or ``*_logit``/``*_self`` ``[L, H, T]`` per-head logits).

    At layer ``l`` (``r = L − 1 − l`` layers remain before the last scored one) over the surviving set ``S``:
    ``s_l = (rel/Σ_S rel + sem/Σ_S sem) · vnorm`` (the ``sem`` term only where the tower has a [CLS]), accumulated as
    ``c ← ½c + ½s_l``. When ``r`` is even and ``|S| > k``, ``S`` shrinks to the top ``max(|S| − p, k)`` by ``c``, with
    ``p = round((|S| − k)/√r · (1 − (H/log|S|)²))`` and ``H`` the entropy of ``rel/Σ_S rel`` (``r = 0``: to ``k``).
    A token scores the number of narrowings it survived plus its cumulative score (scaled into ``[0, 1)``) when it
    left, so ``topk`` keeps exactly the last survivors. ``progressive=False``: the top ``k`` of the final ``c``.
    """
    vnorm = stats["vnorm"]
    n_layers, t = vnorm.shape
    alive = torch.arange(t, device=vnorm.device)
    out = torch.zeros(t, dtype=torch.float32, device=vnorm.device)
    cum: torch.Tensor | None = None
    rounds = 0

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / (x.max().clamp(min=1e-30) * (1 + 1e-6))

    for layer in range(n_layers):
        remain = n_layers - 1 - layer
        r = _attention(stats, "rel", layer, alive)
        r = r / r.sum().clamp(min=1e-30)
        s = _attention(stats, "sem", layer, alive)
        flow = r if s is None else r + s / s.sum().clamp(min=1e-30)
        score = flow * vnorm[layer, alive].float()
        cum = score if cum is None else 0.5 * cum + 0.5 * score
        n = alive.numel()
        if not progressive or n <= k or remain % 2:
            continue
        if remain == 0:
            target = k
        else:
            ratio = -torch.special.xlogy(r, r).sum() / math.log(n) if n > 1 else torch.tensor(1.0)
            prune = int(torch.round((n - k) / math.sqrt(remain) * (1 - ratio ** 2)))
            target = max(n - prune, k)
        order = torch.argsort(cum, descending=True, stable=True)
        keep, drop = order[:target].sort().values, order[target:]
        out[alive[drop]] = rounds + unit(cum)[drop]
        rounds += 1
        alive, cum = alive[keep], cum[keep]
    if cum is not None:
        out[alive] = rounds + unit(cum)
    return out


@SCORERS.register("flowcut", options=[
    Option("progressive", bool, True, "narrow the candidates layer by layer as FlowCut does (False: top-k of the "
           "accumulated flow at the last layer)")], captures={"vision_flow"})
def flowcut_scores(view: TokenView, *, progressive: bool = True) -> torch.Tensor:
    """FlowCut (Tong et al., NeurIPS 2025, "Rethinking Redundancy via Information Flow"): per vision layer, the
    [CLS] token's attention to each patch plus its value-space attention, times the patch value's L1 norm,
    accumulated over the layers before the one whose output the projector reads; the candidates narrow every
    second layer by an amount set by the entropy of the [CLS] attention, down to the budget (``flowcut_ranks``).
    Towers without [CLS] (Qwen2-VL family) use FlowCut's Qwen variant: the attention of the item's mean query.
    Statistics come from the dense tower (the tower is not pruned in between; see docs/methods.md)."""
    out = torch.zeros(view.visual_mask.shape, dtype=torch.float32, device=view.hidden.device)
    for r, m in view.item_masks():
        idx = m.nonzero().squeeze(1)
        j = int(view.item_id[r, idx[0]])
        stats = view.vision_flow(r, j)
        k = min(int(view.budget[r, idx[0]]), idx.numel())
        if k < 1:
            raise InputError(f"Stage.keep: {k} tokens for an item; flowcut needs at least 1")
        out[r, idx] = flowcut_ranks(stats, k, progressive).to(out.device)
    return out
