"""Selectors: ``select(scores[V], features[V, D] | None, k, **options) -> LongTensor[k]`` sorted ascending.

A selector whose spec sets ``needs_features`` receives the stage's visual features; one with a ``batched`` form is
run once for every item of a batch.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .registry import SELECTORS, Option


@functools.lru_cache(maxsize=64)
def _strided(n: int, c: int, device: str) -> torch.Tensor:
    """VisionZip's target rule: every ``max(1, n // c)``-th of ``n`` indices from 0, the first ``c`` of them (``n >=
    c``). Cached: the same image size asks for the same ones every call, and tiny ops cost ~0.1 ms after a model
    forward. Read-only."""
    return torch.arange(0, n, max(1, n // c), device=device)[:c]


@SELECTORS.register("topk")
def topk(scores: torch.Tensor, features: torch.Tensor | None, k: int) -> torch.Tensor:
    """The ``k`` highest scores (ties broken by lower index), returned in original order."""
    order = torch.argsort(scores.float(), descending=True, stable=True)
    return order[:k].sort().values


def mmr_batched(scores: torch.Tensor, features: torch.Tensor, valid: torch.Tensor, ks: list[int],
                lam: float | torch.Tensor) -> list[torch.Tensor]:
    """MMR for ``N`` items at once: ``scores``/``valid`` ``[N, V]``, ``features`` ``[N, V, D]``, ``ks[n]`` picks each,
    ``lam`` a float or ``[N]``. Returns each item's picks sorted. Greedy steps are shared; an item with a smaller
    ``k`` simply keeps its first ``k`` picks (the greedy prefix)."""
    n, v = scores.shape
    dev = scores.device
    f = torch.nn.functional.normalize(features.float(), dim=-1)
    sim = f @ f.transpose(1, 2)  # [N, V, V] cosine similarity
    lam_t = torch.as_tensor(lam, dtype=torch.float32, device=dev).expand(n).unsqueeze(1)
    diverse = lam_t[:, 0] == 0
    all_diverse, any_diverse = (True, True) if isinstance(lam, float) and lam == 0 else \
        (bool(diverse.all()), bool(diverse.any()))
    if all_diverse:  # DivPrune: the scores play no part (the objective's a = lam·imp is 0)
        a = torch.zeros(n, v, device=dev)
    else:
        s = scores.float()
        smin = torch.where(valid, s, torch.full_like(s, float("inf"))).amin(1, keepdim=True)
        smax = torch.where(valid, s, torch.full_like(s, float("-inf"))).amax(1, keepdim=True)
        imp = torch.where(valid, (s - smin) / (smax - smin).clamp(min=1e-12), torch.zeros_like(s))
        a = lam_t * imp
    all_valid = bool(valid.all())  # the common case (one image, equal images): no V x V masking passes
    diag = sim.diagonal(dim1=1, dim2=2)
    diag.fill_(float("-inf"))
    if not all_valid:
        sim.masked_fill_(~valid[:, None, :], float("-inf"))
    first_diverse = None
    if any_diverse:  # DivPrune's first pick (used where lam == 0): the token whose nearest valid neighbour is farthest
        nearest = 1.0 - sim.amax(2)
        first_diverse = (nearest if all_valid else nearest.masked_fill(~valid, float("-inf"))).argmax(1)
    # the objective lam·imp − (1 − lam)·max_{s∈S} sim(·, s) is the minimum over the picks of each pick's row of
    # ``cand = a − b·sim`` (a − b·x falls as x grows, and rounding keeps the order). A pick's own entry and invalid
    # tokens are -inf in every row, so the running minimum drops a pick by itself: three tensor ops per greedy step
    cand = sim.neg_() if all_diverse else sim.mul_((lam_t - 1.0)[:, :, None])  # in place: no second V x V buffer
    if not all_diverse and bool(a.any()):  # adding exact zeros changes nothing
        cand.add_(a[:, None, :])
    if not all_valid:
        cand.masked_fill_(~valid[:, None, :], float("-inf"))  # (-inf · −b is +inf, or nan where b = 0)
    diag.fill_(float("-inf"))
    obj = a.masked_fill(~valid, float("-inf"))
    if n == 1:  # batch 1: one item's greedy loop on plain rows (numpy views on CPU: no torch dispatch per step)
        first = int(first_diverse[0]) if any_diverse else None
        return [torch.tensor(_greedy_rows(cand[0], obj[0], ks[0], first), dtype=torch.long, device=dev).sort().values]
    rows = torch.arange(n, device=dev)
    picks = []
    for step in range(max(ks)):
        i = obj.argmax(1)  # first maximum: ties go to the lower index
        if step == 0 and any_diverse:
            i = torch.where(diverse, first_diverse, i)
        picks.append(i)
        row = cand[rows, i]
        obj = row if step == 0 else torch.minimum(obj, row, out=obj)
    p = torch.stack(picks, 1)
    return [p[j, :ks[j]].sort().values for j in range(n)]


def _greedy_rows(cand: torch.Tensor, obj: torch.Tensor, k: int, first: int | None) -> list[int]:
    """The greedy of :func:`mmr_batched` for one item: ``k`` times pick ``argmax obj`` (first maximum), then
    ``obj = min(obj, cand[pick])``. On CPU the rows are numpy views of the same float32 memory, so each step is two
    small numpy calls instead of two torch dispatches (same IEEE minimum and first-maximum rule: identical picks)."""
    on_cpu = cand.device.type == "cpu"
    c = cand.detach().numpy() if on_cpu else cand
    o = obj.detach().numpy().copy() if on_cpu else obj.clone()
    minimum = np.minimum if on_cpu else torch.minimum
    picks = []
    for step in range(k):
        i = first if step == 0 and first is not None else int(o.argmax())
        picks.append(i)
        if step == 0:
            o = c[i].copy() if on_cpu else c[i].clone()
        else:
            minimum(o, c[i], out=o)
    return picks


def _batched_mmr(lam_of: Any) -> Any:
    def run(scores: torch.Tensor, features: torch.Tensor, valid: torch.Tensor, ks: list[int], **opts: Any):
        return mmr_batched(scores, features, valid, ks, lam_of(features, valid, **opts))
    return run


LAM = Option("lam", float, 0.5, "weight of importance against redundancy", low=0.0, high=1.0)


@SELECTORS.register("maxmin", needs_features=True, batched=_batched_mmr(lambda f, v: 0.0))
def maxmin(scores: torch.Tensor, features: torch.Tensor | None, k: int) -> torch.Tensor:
    """DivPrune (Alvar et al., CVPR 2025): farthest-point selection on cosine distance ``1 - cos(x_i, x_j)``.

    First pick: ``argmax_i min_{j≠i} d(i, j)``; then repeatedly ``argmax_i min_{s∈S} d(i, s)``. Scores are ignored.
    """
    return mmr(scores, features, k, lam=0.0)


@SELECTORS.register("mmr", options=[LAM], needs_features=True, batched=_batched_mmr(lambda f, v, lam=0.5: lam))
def mmr(scores: torch.Tensor, features: torch.Tensor | None, k: int, *, lam: float = 0.5) -> torch.Tensor:
    """Maximal marginal relevance (IDPruner): greedily pick ``argmax λ·imp_i − (1−λ)·max_{s∈S} cos(x_i, x_s)``.

    ``imp`` = the stage's scores min-max normalised to [0, 1] over the image. ``λ = 1`` is top-k; ``λ = 0`` is pure
    diversity (identical to ``maxmin``, including its first pick). The runtime runs all images of a batch at once
    through :func:`mmr_batched`.
    """
    valid = torch.ones(1, scores.shape[0], dtype=torch.bool, device=scores.device)
    return mmr_batched(scores[None], features[None], valid, [k], lam)[0]


def effective_rank(features: torch.Tensor) -> float:
    """Roy & Vetterli effective rank: ``exp(H(p))`` with ``p`` the normalised singular values of the centred features."""
    x = features.float() - features.float().mean(0, keepdim=True)
    gram = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x  # the smaller Gram has the same nonzero spectrum
    s = torch.linalg.eigvalsh(gram.double()).clamp(min=0).sqrt()
    p = s / s.sum().clamp(min=1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _check_adaptive(*, lam_min: float, lam_max: float) -> None:
    if lam_min > lam_max:
        raise ConfigError(f"Stage.lam_min: {lam_min} exceeds lam_max {lam_max}; allowed: lam_min <= lam_max")


def _adaptive_lambdas(features: torch.Tensor, valid: torch.Tensor, lam_min: float = 0.2,
                      lam_max: float = 1.0) -> torch.Tensor:
    out = []
    for f, m in zip(features, valid):
        r = effective_rank(f[m]) / max(1, min(int(m.sum()), f.shape[-1]))
        out.append(lam_max - (lam_max - lam_min) * min(1.0, r))
    return torch.tensor(out, device=features.device)


@SELECTORS.register("adaptive", needs_features=True, batched=_batched_mmr(_adaptive_lambdas),
                    validate=_check_adaptive,
                    options=[Option("lam_min", float, 0.2, "lambda for the most complex item", low=0.0, high=1.0),
                             Option("lam_max", float, 1.0, "lambda for the simplest item", low=0.0, high=1.0)])
def adaptive(scores: torch.Tensor, features: torch.Tensor | None, k: int, *, lam_min: float = 0.2,
             lam_max: float = 1.0) -> torch.Tensor:
    """AgilePruner-like: per image, MMR with ``λ = lam_max − (lam_max − lam_min) · r`` where ``r`` is the effective
    rank of the image's features divided by ``min(V, D)``. Simple images (evidence concentrated, low rank) lean on
    the scores (attention); complex ones (evidence spread, high rank) lean on diversity."""
    valid = torch.ones(1, scores.shape[0], dtype=torch.bool, device=scores.device)
    lam = _adaptive_lambdas(features[None], valid, lam_min, lam_max)
    return mmr_batched(scores[None], features[None], valid, [k], lam)[0]


CONTEXTUAL = Option("contextual", int, 0, "contextual tokens (VisionZip): centres the other tokens merge into", low=0)


@SELECTORS.register("visionzip", options=[CONTEXTUAL])
def visionzip(scores: torch.Tensor, features: torch.Tensor | None, k: int, *, contextual: int = 0) -> torch.Tensor:
    """VisionZip: ``k − contextual`` dominant tokens (highest scores) plus ``contextual`` centres taken with a fixed
    stride from the remaining tokens (in original order; every ``max(1, n // contextual)``-th from the first, as the
    paper's code picks its targets); with the ``merge`` reducer's matching ``contextual`` option the other tokens are
    averaged into those centres, which become the contextual tokens."""
    c = min(contextual, k - 1) if k > 1 else 0
    order = torch.argsort(scores.float(), descending=True, stable=True)
    dominant = order[: k - c]
    if c == 0:
        return dominant.sort().values
    rest = order[k - c:].sort().values  # n = V - k + c > c tokens: the stride yields at least c of them
    centres = rest.index_select(0, _strided(rest.numel(), c, str(rest.device)))
    return torch.cat([dominant, centres]).sort().values


def dpp_batched(scores: torch.Tensor, features: torch.Tensor, valid: torch.Tensor, ks: list[int]) -> list[torch.Tensor]:
    """Greedy MAP inference of a conditional DPP for ``N`` items at once (``scores``/``valid`` ``[N, V]``,
    ``features`` ``[N, V, D]``); each item keeps its first ``ks[n]`` picks (greedy prefixes)."""
    n, v = scores.shape
    dev = scores.device
    f = torch.nn.functional.normalize(features.float(), dim=-1)
    s = torch.where(valid, scores.float(), torch.zeros_like(scores, dtype=torch.float32))
    kernel = s[:, :, None] * (f @ f.transpose(1, 2)) * s[:, None, :]  # L = diag(q) S diag(q)
    kernel = kernel * (valid[:, :, None] & valid[:, None, :])
    steps = max(ks)
    rows = torch.arange(n, device=dev)
    ci = torch.zeros(steps, n, v, device=dev)
    d2 = torch.diagonal(kernel, dim1=1, dim2=2).clone().masked_fill(~valid, float("-inf"))
    chosen = ~valid
    fallback = s.masked_fill(~valid, float("-inf"))
    picks = []
    for t in range(steps):
        best, j = d2.max(1)
        exhausted = best <= 1e-10  # the kernel's rank is used up: continue by the scores alone
        if exhausted.any():
            j = torch.where(exhausted, fallback.masked_fill(chosen, float("-inf")).argmax(1), j)
        picks.append(j)
        e = (kernel[rows, j] - torch.einsum("tn,tnv->nv", ci[:t, rows, j], ci[:t])) / \
            best.clamp(min=1e-10).sqrt()[:, None]
        e = torch.where(exhausted[:, None], torch.zeros_like(e), e)
        ci[t] = e
        d2 = d2 - e.square()
        chosen = chosen.clone()
        chosen[rows, j] = True
        d2 = d2.masked_fill(chosen, float("-inf"))
    p = torch.stack(picks, 1)
    return [p[i, :ks[i]].sort().values for i in range(n)]


@SELECTORS.register("dpp", needs_features=True,
                    batched=lambda scores, features, valid, ks: dpp_batched(scores, features, valid, ks))
def dpp(scores: torch.Tensor, features: torch.Tensor | None, k: int) -> torch.Tensor:
    """Conditional DPP (CDPruner, Zhang et al., NeurIPS 2025): kernel ``L_ij = q_i · cos(x_i, x_j) · q_j`` with
    ``q`` the stage's scores (relevance to the instruction from ``text_relevance``); greedy MAP inference (Chen et
    al.'s incremental Cholesky: pick ``argmax_i det(L_{S∪i}) / det(L_S)``). When the kernel's rank is exhausted
    (``k`` above the feature dimension) the remaining picks go by the scores (a deviation: the reference would take
    square roots of non-positive gains)."""
    valid = torch.ones(1, scores.shape[0], dtype=torch.bool, device=scores.device)
    return dpp_batched(scores[None], features[None], valid, [k])[0]


@SELECTORS.register("sads", needs_features=True)
def sads(scores: torch.Tensor, features: torch.Tensor | None, k: int) -> torch.Tensor:
    """ZOO-Prune's sensitivity-aware diverse selection: ``ŝ`` = scores min-max normalised to [0, 1]; first the
    argmax of ``ŝ``, then repeatedly ``argmax_i ŝ_i · min_{j∈S} (1 − cos(x_i, x_j))`` over the unselected tokens."""
    s = scores.float()
    s = (s - s.min()) / (s.max() - s.min() + 1e-8)
    f = torch.nn.functional.normalize(features.float(), dim=-1)
    picked = [int(torch.argmax(s))]
    nearest = 1 - f @ f[picked[0]]
    taken = torch.zeros_like(s, dtype=torch.bool)
    taken[picked[0]] = True
    for _ in range(k - 1):
        gain = torch.where(taken, torch.full_like(s, -1.0), s * nearest)
        i = int(torch.argmax(gain))
        picked.append(i)
        taken[i] = True
        nearest = torch.minimum(nearest, 1 - f @ f[i])
    return torch.tensor(sorted(picked), device=scores.device)
