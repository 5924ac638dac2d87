"""Reducers: ``reduce(hidden[V, D], keep_idx[k], pruned_idx[V-k], scores[V], **options) -> [k, D]``.

They return the rows that replace the kept tokens of one image; the runtime then drops the pruned rows. ``hidden``
may be a view of the runtime's sequence: a reducer must not write into it.
"""
from __future__ import annotations

import functools

import torch

from .registry import REDUCERS, Option
from .selection import CONTEXTUAL


@REDUCERS.register("drop")
def drop(hidden: torch.Tensor, keep_idx: torch.Tensor, pruned_idx: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The kept rows unchanged: pruned tokens are discarded."""
    return hidden[keep_idx]


PROPORTIONAL = Option("proportional", bool, False, "ToMe's proportional attention: merge by token counts and add "
                      "log(count) to the attention logits of each merged key in every later layer")


def _merge_groups(hidden: torch.Tensor, keep_idx: torch.Tensor, pruned_idx: torch.Tensor, scores: torch.Tensor,
                  contextual: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The kept and pruned rows (gathered once, ``index_select``: ~3x faster than ``hidden[idx]`` for rows) and,
    for each pruned row, the kept row it joins: its most similar kept row by cosine, or with ``contextual = c > 0``
    the most similar of the centres (:func:`_centres`). Returns ``(kept, pruned, centres, target)``: ``centres``
    their positions in ``kept`` (``None`` without ``contextual``), ``target`` each pruned row's target as an index
    into ``centres`` when there are centres, else into ``kept``. ``pruned_idx`` is not empty."""
    kept, pruned = hidden.index_select(0, keep_idx), hidden.index_select(0, pruned_idx)
    centres = _centres(scores, keep_idx, contextual) if contextual > 0 else None
    targets = kept.index_select(0, centres) if centres is not None else kept
    ref = torch.nn.functional.normalize(targets.float(), dim=-1)
    # cosine argmax: a pruned row's own norm scales its whole row of similarities, so only the targets are
    # normalised (the same picks up to floating-point near-ties; saves normalising every pruned row)
    return kept, pruned, centres, (pruned.float() @ ref.T).argmax(1)


def _centres(scores: torch.Tensor, keep_idx: torch.Tensor, contextual: int) -> torch.Tensor:
    """Positions in ``keep_idx`` of the contextual centres: the ``c = min(contextual, k − 1)`` lowest-scored kept
    tokens (``k = 1``: none; the highest-scored kept token always stays dominant, as the ``visionzip`` selector
    keeps it), score ties resolved as that selector does (the last ``c`` of the descending stable order); in
    token order, so that a pruned token equally similar to two centres joins the first (as in VisionZip's code)."""
    k = keep_idx.numel()
    c = min(contextual, k - 1) if k > 1 else 0
    return torch.argsort(scores.index_select(0, keep_idx).float(), descending=True, stable=True)[k - c:].sort().values


def _weighted_mean(kept: torch.Tensor, pruned: torch.Tensor, target: torch.Tensor, w_kept: torch.Tensor,
                   w_pruned: torch.Tensor) -> torch.Tensor:
    """Each kept row's group mean (``target``: the kept row each pruned row joins) with the given weights."""
    num = (kept.float() * w_kept[:, None]).index_add_(0, target, pruned.float() * w_pruned[:, None])
    den = w_kept.index_add(0, target, w_pruned)
    return (num / den[:, None]).to(kept.dtype)


@REDUCERS.register("merge", options=[CONTEXTUAL, PROPORTIONAL])
def merge(hidden: torch.Tensor, keep_idx: torch.Tensor, pruned_idx: torch.Tensor, scores: torch.Tensor, *,
          contextual: int = 0, proportional: bool = False) -> torch.Tensor:
    """Each pruned token joins its most similar kept token (cosine); a kept token becomes the weighted mean of its
    group with weights ``w = max(score, 1e-6)``, so ``Σ_groups W_g · merged_g = Σ_i w_i · x_i``. The merged token
    keeps the position of the kept token it replaces.

    ``contextual = c > 0`` (VisionZip, with the ``visionzip`` selector): pruned tokens join only the
    ``min(c, k − 1)`` lowest-scored kept tokens (the contextual centres) with equal weights; the dominant tokens
    stay unchanged (with ``k = 1`` the one kept token stays as it is and the pruned tokens are dropped, as the
    selector then keeps no contextual token). Every token outside ``keep_idx`` is merged (``pruned_idx`` is its
    complement, as the runtime passes it).

    ``proportional`` (ToMe, Bolya et al., ICLR 2023): the weights are token counts (each original token counts 1,
    a token merged earlier counts its group), and the runtime adds ``log(count)`` to the attention logit of every
    merged key in all later layers and decode steps, so a group attracts the attention mass its members would
    have (see :func:`merge_counts`)."""
    if proportional:
        return merge_counts(hidden, keep_idx, pruned_idx, scores, None, contextual)[0]
    if pruned_idx.numel() == 0:
        return hidden.index_select(0, keep_idx)
    if contextual > 0:
        return _contextual_merge(hidden, keep_idx, scores, contextual)
    kept, pruned, _, target = _merge_groups(hidden, keep_idx, pruned_idx, scores, 0)
    w = scores.float().clamp(min=1e-6)
    return _weighted_mean(kept, pruned, target, w[keep_idx], w[pruned_idx])


def _contextual_merge(hidden: torch.Tensor, keep_idx: torch.Tensor, scores: torch.Tensor, contextual: int
                      ) -> torch.Tensor:
    """:func:`merge` with ``contextual > 0``: the centres (:func:`_centres`) become the plain means of their groups,
    the other kept rows stay as they are. Works on all rows at once instead of gathering the pruned ones
    (fewer, larger ops: the cost at batch 1 is the number of ops): every row's most similar centre, kept rows
    then sent to a spare group ``c`` (dominant) or their own (centres), one ``index_add`` of all rows."""
    kept = hidden.index_select(0, keep_idx)  # fresh: the centres are written into it
    centres = _centres(scores, keep_idx, contextual)
    c = centres.numel()
    if c == 0:  # one kept token: it stays dominant, the pruned tokens are dropped
        return kept
    centre_idx = keep_idx.index_select(0, centres)
    ref = torch.nn.functional.normalize(kept.index_select(0, centres).float(), dim=-1)
    rows = hidden.float()
    # cosine argmax: a row's own norm scales its whole row of similarities, so only the centres are normalised
    group = (rows @ ref.T).argmax(1)
    group.index_fill_(0, keep_idx, c).index_copy_(0, centre_idx, _arange(c, str(group.device)))
    sums = torch.zeros(c + 1, rows.shape[1], dtype=rows.dtype, device=rows.device).index_add_(0, group, rows)
    size = torch.bincount(group, minlength=c + 1)
    return kept.index_copy_(0, centres, (sums[:c] / size[:c, None]).to(kept.dtype))


@functools.lru_cache(maxsize=16)
def _arange(n: int, device: str) -> torch.Tensor:
    """``arange(n)``, cached (read-only)."""
    return torch.arange(n, device=device)


def merge_counts(hidden: torch.Tensor, keep_idx: torch.Tensor, pruned_idx: torch.Tensor, scores: torch.Tensor,
                 counts: torch.Tensor | None, contextual: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`merge` with ``proportional=True`` and the number of original tokens each kept token stands for
    afterwards (``counts``: those of the item's current tokens, ``None`` = all 1)."""
    counts = torch.ones(hidden.shape[0], device=hidden.device) if counts is None else counts.float()
    if pruned_idx.numel() == 0 or (contextual > 0 and keep_idx.numel() < 2):
        # (one kept token with contextual centres: it stays dominant, the pruned tokens are dropped)
        return hidden.index_select(0, keep_idx), counts[keep_idx]
    kept, pruned, centres, target = _merge_groups(hidden, keep_idx, pruned_idx, scores, contextual)
    if centres is not None:
        target = centres[target]
    kept_counts, pruned_counts = counts.index_select(0, keep_idx), counts.index_select(0, pruned_idx)
    return _weighted_mean(kept, pruned, target, kept_counts, pruned_counts), kept_counts.index_add(0, target,
                                                                                                   pruned_counts)


RECYCLED = Option("recycled", int, 4, "kept slots (the lowest-scored) that become recycled tokens", low=1)


@REDUCERS.register("recycle", options=[RECYCLED])
def recycle(hidden: torch.Tensor, keep_idx: torch.Tensor, pruned_idx: torch.Tensor, scores: torch.Tensor, *,
            recycled: int = 4) -> torch.Tensor:
    """SparseVLM-style recycling: instead of discarding the pruned tokens, ``recycled`` tokens summarise them. The
    ``c = min(recycled, k − 1, pruned)`` lowest-scored kept tokens join the pruned ones in a pool; the ``c``
    highest-scored pool tokens seed ``c`` groups, every pool token joins its most similar seed (cosine), and each
    group becomes its score-weighted mean (``w = max(score, 1e−6)``), placed in one of the freed slots. So the
    pool's weighted sum is preserved: ``Σ_g W_g · r_g = Σ_{i∈pool} w_i · x_i``. The other kept tokens are unchanged."""
    kept = hidden[keep_idx]
    c = min(recycled, keep_idx.numel() - 1, pruned_idx.numel())
    if c < 1:
        return kept
    w = scores.float().clamp(min=1e-6)
    slots = torch.argsort(scores[keep_idx].float(), stable=True)[:c]  # positions in keep_idx
    pool = torch.cat([keep_idx[slots], pruned_idx])
    order = torch.argsort(scores[pool].float(), descending=True, stable=True)[:c]  # seed positions in the pool
    seeds = pool[order]
    f = torch.nn.functional.normalize(hidden.float(), dim=-1)
    group = (f[pool] @ f[seeds].T).argmax(1)
    group[order] = torch.arange(c, device=group.device)  # a seed leads its own group (duplicate tokens: no empty group)
    num = torch.zeros(c, hidden.shape[-1], device=hidden.device).index_add(0, group, hidden[pool].float() *
                                                                           w[pool, None])
    den = torch.zeros(c, device=hidden.device).index_add(0, group, w[pool])
    out = kept.clone()
    out[slots] = (num / den[:, None]).to(hidden.dtype)
    return out


@REDUCERS.register("transform", options=[
    Option("tau", float, 0.1, "temperature of the soft assignment (smaller: closer to one kept token per pruned one)",
           low=1e-4),
    Option("alpha", float, 1.0, "weight of the pruned tokens' contributions (0: drop)", low=0.0)])
def transform(hidden: torch.Tensor, keep_idx: torch.Tensor, pruned_idx: torch.Tensor, scores: torch.Tensor, *,
              tau: float = 0.1, alpha: float = 1.0) -> torch.Tensor:
    """Token-Transforming-style many-to-many merging (Zeng et al., 2025): a transform matrix spreads every pruned
    token over the kept tokens by a softmax of cosine similarity (``A[p, i] = softmax_i(cos(x_p, x_i) / tau)``), and
    kept token i becomes ``(x_i + alpha · Σ_p A[p, i] x_p) / (1 + alpha · Σ_p A[p, i])``. Each pruned token's mass
    sums to ``alpha`` over the kept tokens, so the total weighted mass is preserved; ``alpha = 0`` is ``drop`` (the
    identity transform); small ``tau`` approaches ``merge`` with equal weights."""
    kept = hidden[keep_idx]
    if pruned_idx.numel() == 0 or alpha == 0:
        return kept
    f = torch.nn.functional.normalize(hidden.float(), dim=-1)
    a = ((f[pruned_idx] @ f[keep_idx].T) / tau).softmax(-1) * alpha  # [P, k]
    num = kept.float() + a.T @ hidden[pruned_idx].float()
    den = 1.0 + a.sum(0)
    return (num / den[:, None]).to(hidden.dtype)
