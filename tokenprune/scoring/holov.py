"""``holov`` scorer (HoloV-style holistic budgets): the item's budget spread over spatial regions by their
importance, no region left empty while the budget allows, the most important tokens kept inside each region."""
from __future__ import annotations

import torch

from ..errors import InputError
from ..registry import SCORERS, Option
from .attention import QUERY_OPTION
from .quota import allocate
from .view import TokenView

BASES = ("cls_attention", "attention", "norm")
CAPTURES = {"cls_attention": {"vision_attention"}, "attention": {"lm_attention"}, "norm": {"features"}}


def regions_of(cell: torch.Tensor, h: int, w: int, r: int) -> torch.Tensor:
    """Region (``r × r`` crops of the ``h × w`` grid, row-major) of each cell index; a grid with fewer rows or
    columns than ``r`` gets as many crops as it has."""
    row, col = cell // w, cell % w
    return (row * min(r, h) // h) * min(r, w) + col * min(r, w) // w


def holov_budgets(importance: torch.Tensor, region: torch.Tensor, k: int, sharpness: float = 1.0) -> torch.Tensor:
    """Tokens per region: one for every region while ``k`` allows (the holistic floor), the rest in proportion to
    the regions' mean importance (raised to ``sharpness``) by largest remainder, capped by each region's tokens."""
    ids = torch.unique(region)
    cap = torch.stack([(region == g).sum() for g in ids])
    rel = torch.stack([importance[region == g].mean() for g in ids]).clamp(min=0) ** sharpness
    floor = torch.ones_like(cap) if k >= ids.numel() else torch.zeros_like(cap)
    if k < ids.numel():  # fewer tokens than regions: the most important regions get one each
        floor[torch.argsort(rel, descending=True, stable=True)[:k]] = 1
        return floor
    return floor + allocate(rel, k - ids.numel(), cap - floor)


@SCORERS.register("holov", options=[
    Option("base", str, "cls_attention", "token importance inside and across regions", choices=BASES),
    Option("regions", int, 3, "crops per side: the grid is split into regions x regions crops", low=1),
    Option("sharpness", float, 1.0, "exponent on region importance before the budget is split (0: equal)", low=0.0),
    QUERY_OPTION],
    captures=lambda base="cls_attention", **_: CAPTURES[base],
    query_dependent=lambda base="cls_attention", **_: base == "attention")
def holov_scores(view: TokenView, *, base: str = "cls_attention", regions: int = 3, sharpness: float = 1.0,
                 query: str = "last") -> torch.Tensor:
    """HoloV (Zou et al., NeurIPS 2025, "Don't Just Chase Highlighted Tokens"): the item's grid (per frame for
    video, frames pooled) is split into ``regions × regions`` crops; every crop keeps at least one token while the
    budget allows, the rest of the budget follows the crops' mean importance; inside a crop its most important
    tokens are kept (they score ``2 + a``, so ``topk`` keeps exactly them; others score ``a``, the importance
    min-max normalised over the item). Importance: vision-tower [CLS] attention, LM text→visual attention, or the
    feature norm (``base``). Items without a grid rank by importance alone."""
    if base == "cls_attention":
        imp = view.vision_attention().float()
    elif base == "attention":
        imp = view.attention(query).float()
    else:
        imp = view.features.float().norm(dim=-1)
    out = torch.zeros_like(imp)
    cell = view.cell if view.cell is not None else torch.full_like(view.local_index, -1)
    for r, m in view.item_masks():
        idx = m.nonzero().squeeze(1)
        a = imp[r, idx]
        a = (a - a.min()) / (a.max() - a.min()).clamp(min=1e-12)
        out[r, idx] = a
        c = cell[r, idx]
        h, w = (int(x) for x in view.grid_hw[r, idx[0]]) if view.grid_hw is not None else (0, 0)
        if h == 0 or (c < 0).all():
            continue
        on = c >= 0  # tokens outside the grid (a trailing newline) keep their importance score
        reg = regions_of(c[on], h, w, regions)
        k = min(int(view.budget[r, idx[0]]), int(on.sum()))
        if k < 1:
            raise InputError(f"Stage.keep: {k} tokens for an item; holov needs at least 1")
        ks = holov_budgets(a[on], reg, k, sharpness)
        sub = on.nonzero().squeeze(1)
        for g, kg in zip(torch.unique(reg).tolist(), ks.tolist()):
            members = sub[reg == g]
            top = members[torch.argsort(a[members], descending=True, stable=True)[:kg]]
            out[r, idx[top]] = 2.0 + a[top]
    return out
