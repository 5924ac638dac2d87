"""Runs one pruning stage at prefill: budgets, scoring, per-image selection, reduction -> a keep mask."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import Stage
from ..errors import InputError, InternalError
from ..reduce import merge_counts
from ..registry import REDUCERS, SCORERS, SELECTORS
from ..scoring.view import Deferred, TokenView
from .items import MediaItem


@dataclass
class StageResult:
    keep: torch.Tensor  # [B, n] bool: tokens that survive (padding excluded)
    hidden: torch.Tensor  # [B, n, D] possibly modified by a merging reducer
    selections: list[list[torch.Tensor]]  # per row, per image: kept indices local to the image's current tokens
    scores: list[list[torch.Tensor]]  # per row, per image: the scores the selection was made from
    counts: list[list[torch.Tensor]] | None = None  # proportional merging: original tokens per kept token


def budgets(stage: Stage, images: list[list[MediaItem]]) -> list[list[int]]:
    """Per-row, per-image keep counts; raises :class:`InputError` when ``keep`` exceeds what an image has."""
    out = []
    for b, row in enumerate(images):
        ks = []
        for j, im in enumerate(row):
            avail = im.alive.numel()
            k = stage.budget(im.orig_len, avail)
            if k > avail:
                raise InputError(f"Stage.keep: {stage.keep!r} asks for {k} tokens but {im.modality} {j} of sample {b} "
                                 f"has {avail} visual tokens at stage {stage.at!r}; allowed: 1..{avail} "
                                 f"(or a fraction in (0, 1])")
            ks.append(k)
        out.append(ks)
    return out


def _alive(per_token: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """``per_token[alive]``; the tensor itself while the item has all its tokens (``alive`` is then ``arange``: the
    distinct sorted survivors of as many tokens)."""
    return per_token if alive.numel() == per_token.numel() else per_token[alive]


def _one_item_rows(images: list[list[MediaItem]], ks: list[list[int]], dev: torch.device) -> dict | None:
    """The view's per-token tensors when every row holds exactly one item and all items have the same number of
    tokens (batch 1, or equal images): stacked per-item tensors instead of zero-filled buffers written slice by
    slice. ``None`` otherwise."""
    if not all(len(row) == 1 for row in images):
        return None
    items = [row[0] for row in images]
    m = items[0].pos.numel()
    if any(im.pos.numel() != m for im in items):
        return None
    b = len(items)
    stack = lambda xs: xs[0][None] if b == 1 else torch.stack(xs)  # noqa: E731
    keeps, grids = [k for (k,) in ks], [im.grid[1:] if im.grid is not None else (0, 0) for im in items]
    alive = [im.alive for im in items]  # (the items' current tokens, fixed now: compaction replaces im.alive later)
    # Deferred: most scorers read none of these; each is a few small ops that add up at batch 1
    # (full/expand: a few µs where repeat takes ~15)
    t = {"vi": stack([im.pos for im in items]),
         "vm": Deferred(lambda: torch.ones(b, m, dtype=torch.bool, device=dev)),
         "iid": Deferred(lambda: torch.zeros(b, m, dtype=torch.long, device=dev)),
         "loc": Deferred(lambda: torch.arange(m, device=dev).expand(b, m).contiguous()),
         "ilen": Deferred(lambda: torch.full((b, m), m, device=dev)),
         "bud": Deferred(lambda: torch.full((b, m), keeps[0], device=dev) if len(set(keeps)) == 1 else
                         torch.tensor(keeps, device=dev)[:, None].repeat(1, m)),
         "frame": Deferred(lambda: stack([im.frame_of(a) for im, a in zip(items, alive)])),
         "cell": Deferred(lambda: stack([im.cell_of(a) for im, a in zip(items, alive)])),
         "hw": Deferred(lambda: torch.tensor(grids[0], device=dev).expand(b, m, 2).contiguous()
                        if len(set(grids)) == 1 else torch.tensor(grids, device=dev)[:, None, :].repeat(1, m, 1)),
         "vis_att": None, "pad": None}
    if any(im.vision is not None for im in items):
        for j, im in enumerate(items):
            if im.vision is None:
                raise InputError(f"vision-tower attention is unavailable for {im.modality} 0 of sample {j}")
        t["vis_att"] = stack([_alive(im.vision, im.alive).float() for im in items])
    if any(im.padding is not None for im in items):
        t["pad"] = stack([_alive(im.padding, im.alive) if im.padding is not None else
                          torch.zeros(m, dtype=torch.bool, device=dev) for im in items])
    return t


def build_view(hidden: torch.Tensor, valid: torch.Tensor, images: list[list[MediaItem]], ks: list[list[int]],
               layer: int | None, generator: torch.Generator,
               attention_fn: Callable[[TokenView, str, str], torch.Tensor] | None) -> TokenView:
    b = hidden.shape[0]
    fast = _one_item_rows(images, ks, hidden.device)
    if fast is not None:
        return _make_view(hidden, valid, images, layer, generator, attention_fn, **fast)
    vmax = max((sum(im.pos.numel() for im in row) for row in images), default=0)
    dev = hidden.device
    z = lambda dtype=torch.long: torch.zeros(b, vmax, dtype=dtype, device=dev)  # noqa: E731
    vi, vm, iid, loc, ilen, bud = z(), z(torch.bool), z(), z(), z(), z()
    has_vision = any(im.vision is not None for row in images for im in row)
    vis_att = z(torch.float32) if has_vision else None
    pad = z(torch.bool) if any(im.padding is not None for row in images for im in row) else None
    frame, cell = z(), z() - 1
    hw = torch.zeros(b, vmax, 2, dtype=torch.long, device=dev)
    for r, row in enumerate(images):
        off = 0
        for j, im in enumerate(row):
            m = im.pos.numel()
            sl = slice(off, off + m)
            vi[r, sl], vm[r, sl], iid[r, sl] = im.pos, True, j
            loc[r, sl] = torch.arange(m, device=dev)
            if im.grid is not None:
                frame[r, sl], cell[r, sl] = im.frame_of(im.alive), im.cell_of(im.alive)
                hw[r, sl] = torch.tensor(im.grid[1:], device=dev)
            ilen[r, sl], bud[r, sl] = m, ks[r][j]
            if vis_att is not None:
                if im.vision is None:
                    raise InputError(f"vision-tower attention is unavailable for {im.modality} {j} of sample {r}")
                vis_att[r, sl] = im.vision[im.alive].float()
            if pad is not None and im.padding is not None:
                pad[r, sl] = im.padding[im.alive]
            off += m
    return _make_view(hidden, valid, images, layer, generator, attention_fn, vi, vm, iid, loc, ilen, bud, frame, cell,
                      hw, vis_att, pad)


def _make_view(hidden: torch.Tensor, valid: torch.Tensor, images: list[list[MediaItem]], layer: int | None,
               generator: torch.Generator, attention_fn: Callable[[TokenView, str, str], torch.Tensor] | None,
               vi: torch.Tensor, vm: torch.Tensor, iid: torch.Tensor, loc: torch.Tensor, ilen: torch.Tensor,
               bud: torch.Tensor, frame: torch.Tensor, cell: torch.Tensor, hw: torch.Tensor,
               vis_att: torch.Tensor | None, pad: torch.Tensor | None) -> TokenView:
    flow = {(r, j): {n: t[..., im.alive] for n, t in im.flow.items()}
            for r, row in enumerate(images) for j, im in enumerate(row) if im.flow is not None}
    view = TokenView(hidden=hidden, visual_index=vi, visual_mask=vm, item_id=iid, local_index=loc, item_len=ilen,
                     budget=bud, valid=valid, layer=layer, generator=generator, _vision_attention=vis_att,
                     frame=frame, cell=cell, grid_hw=hw, _padding=pad, _flow=flow)
    if attention_fn is not None:
        view._attention_fn = lambda query, keys="all": attention_fn(view, query, keys)
    return view


def run_stage(stage: Stage, hidden: torch.Tensor, valid: torch.Tensor, images: list[list[MediaItem]],
              layer: int | None, generator: torch.Generator,
              attention_fn: Callable[[TokenView, str, str], torch.Tensor] | None,
              frozen: StageResult | None = None, inplace: bool = False) -> StageResult | None:
    """Selects each image's kept tokens; ``None`` when every image keeps all its tokens (identity).

    ``frozen``: the result of an earlier prefill of the same generate() call; its selections and scores are reused
    so that recomputation without a KV cache sees exactly the same tokens (and merges them identically).
    ``inplace``: a merging reducer may write its rows into ``hidden`` itself (the caller owns it and reads only the
    result); otherwise they go into a copy.
    """
    ks = budgets(stage, images)
    if all(k == im.alive.numel() for row, kr in zip(images, ks) for im, k in zip(row, kr)):
        return None
    reducer = REDUCERS.get(stage.reducer)
    selections: list[list[torch.Tensor]] = []
    all_scores: list[list[torch.Tensor]] = []
    scores = view = feats = None
    if frozen is None:
        view = build_view(hidden, valid, images, ks, layer, generator, attention_fn)
        scores = SCORERS.get(stage.scorer)(view, **stage.scorer_kwargs)
        feats = view.features if SELECTORS.get(stage.selector).needs_features else None
    chosen = frozen.selections if frozen is not None else _select(stage, scores, feats, images, ks)
    keep = valid.clone()
    out_hidden = hidden
    counts: list[list[torch.Tensor]] | None = [] if stage.proportional else None
    for r, row in enumerate(images):
        sel_row, score_row, count_row, off = [], [], [], 0
        for j, im in enumerate(row):
            m = im.pos.numel()
            keep[r, im.pos] = False
            sel = chosen[r][j]
            s = frozen.scores[r][j] if frozen is not None else scores[r, off:off + m]
            kept_pos = im.pos.index_select(0, sel)  # (1-D gathers: index_select, a fraction of t[idx]'s cost)
            keep[r, kept_pos] = True
            if stage.reducer != "drop":
                item_hidden = _item_rows(hidden[r], im.pos)  # items' spans are disjoint: no write below touches it
                if out_hidden is hidden and not inplace:
                    out_hidden = hidden.clone()
                pruned = torch.ones(m, dtype=torch.bool, device=hidden.device)
                pruned[sel] = False
                if stage.proportional:
                    reduced, kept_counts = merge_counts(item_hidden, sel, pruned.nonzero().squeeze(1), s, im.counts,
                                                        stage.reducer_kwargs.get("contextual", 0))
                    count_row.append(kept_counts)
                else:
                    reduced = reducer(item_hidden, sel, pruned.nonzero().squeeze(1), s, **stage.reducer_kwargs)
                if reduced.untyped_storage().data_ptr() == hidden.untyped_storage().data_ptr():
                    reduced = reduced.clone()  # a reducer returned rows of its input view: copy before writing
                out_hidden[r].index_copy_(0, kept_pos, reduced)
            sel_row.append(sel)
            score_row.append(s)
            off += m
        selections.append(sel_row)
        all_scores.append(score_row)
        if counts is not None:
            counts.append(count_row)
    return StageResult(keep=keep, hidden=out_hidden, selections=selections, scores=all_scores, counts=counts)


def _item_rows(hidden: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``hidden[pos]``: on CPU a view when the positions are consecutive (an image's span before any pruning),
    else a gather (``index_select``: ~4x faster than ``hidden[pos]``; on an accelerator the span check would cost
    two host syncs)."""
    if pos.device.type == "cpu":
        start, end = int(pos[0]), int(pos[-1]) + 1
        if end - start == pos.numel():
            return hidden[start:end]
    return hidden.index_select(0, pos)


def _select(stage: Stage, scores: torch.Tensor, feats: torch.Tensor | None, images: list[list[MediaItem]],
            ks: list[list[int]]) -> list[list[torch.Tensor]]:
    """Per row, per image: the selected local indices. Tokens a scorer excludes (score ``-inf``: padded canvas,
    attention sinks) are never kept; the budget is capped to what remains. Selectors with a ``batched`` form run
    once for every image of the batch."""
    selector = SELECTORS.get(stage.selector)
    items = []  # (row, image, offset, length, k)
    # one reduction decides the usual case: a finite sum means every score is finite (an overflowing sum only
    # sends us down the exact path)
    fin = None if math.isfinite(float(scores.sum())) else torch.isfinite(scores)
    finite_counts = []  # per item: how many of its scores are finite
    for r, row in enumerate(images):
        off = 0
        for j, im in enumerate(row):
            m = im.pos.numel()
            finite = m if fin is None else int(fin[r, off:off + m].sum())
            finite_counts.append(finite)
            items.append((r, j, off, m, max(1, min(ks[r][j], finite)) if finite else ks[r][j]))
            off += m
    out: list[list[torch.Tensor]] = [[None] * len(row) for row in images]  # type: ignore[list-item]
    batched = selector.batched
    if batched is not None and items:
        vmax = max(it[3] for it in items)
        n = len(items)
        if n == 1:  # one item: views, no padded copies
            r, _, off, m, _ = items[0]
            s, f = scores[r:r + 1, off:off + m], feats[r:r + 1, off:off + m]
            ok = fin[r:r + 1, off:off + m] if fin is not None else torch.ones_like(s, dtype=torch.bool)
        else:
            s = torch.full((n, vmax), float("-inf"), device=scores.device)
            f = torch.zeros(n, vmax, feats.shape[-1], device=scores.device, dtype=feats.dtype)
            for i, (r, _, off, m, _) in enumerate(items):
                s[i, :m], f[i, :m] = scores[r, off:off + m], feats[r, off:off + m]
            ok = torch.isfinite(s)
        sel = batched(s, f, ok, [it[4] for it in items], **stage.selector_kwargs)
        for (r, j, _, _, _), one in zip(items, sel):
            out[r][j] = one
    else:
        for (r, j, off, m, k), finite in zip(items, finite_counts):
            s, f = scores[r, off:off + m], (feats[r, off:off + m] if feats is not None else None)
            if finite in (0, m):  # all finite, or none (then the selector ranks the -inf scores as they are)
                out[r][j] = selector(s, f, k, **stage.selector_kwargs)
            else:
                ok = fin[r, off:off + m].nonzero().squeeze(1)
                out[r][j] = ok[selector(s[ok], f[ok] if f is not None else None, k, **stage.selector_kwargs)]
    for (r, j, _, _, k) in items:
        sel = out[r][j]
        distinct = sel.numel() < 2 or bool((sel[1:] > sel[:-1]).all()) or sel.unique().numel() == sel.numel()
        if sel.numel() != k or not distinct:
            raise InternalError(f"selector {stage.selector!r} returned an invalid selection (expected {k} distinct "
                                f"indices)")
    return out
