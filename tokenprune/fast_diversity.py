"""Diversity selection at video scale: DivPrune's max-min and IDPruner-style MMR without the ``V × V`` matrix.

The exact selectors (:mod:`tokenprune.selection`) build all pairwise cosine similarities: ``V² · D`` work and
``V²`` memory (363 ms at V = 2880, D = 4096 on a 2-core CPU; 530 MB and several seconds at V = 11,520). Here:

1. **Sketch** (``dims > 0``): unit features are multiplied by a fixed, seeded ``D × dims`` matrix with orthonormal
   columns and renormalised, so cosines are computed in ``dims`` dimensions (Johnson–Lindenstrauss: distortion
   ``ε ≈ O(1/√dims)``). ``dims = 0`` (or ``dims ≥ D``) keeps the exact features.
2. **Incremental greedy**: each step needs only the similarities to the token just picked (one ``V × dims``
   product), kept as a running ``max_{s∈S} cos(x_i, x_s)`` vector — ``O(k · V · dims)`` work, ``O(V)`` memory.
3. DivPrune's first pick (``argmax_i min_{j≠i} d(i, j)``) is computed in row blocks (``O(V² · dims)``, no ``V × V``
   buffer).

Guarantee: greedy farthest-point selection is a 2-approximation of the k-center covering radius (Gonzalez, 1985);
run on distances distorted by at most a factor ``(1 ± ε)``, it remains a ``2(1 + ε)/(1 − ε)``-approximation on the
true cosine distances. With ``dims = 0`` the picks are those of the exact selectors (same greedy, same tie rule; a
test checks identical indices).
"""
from __future__ import annotations

import functools
from typing import Any

import torch

from .registry import SELECTORS, Option
from .selection import LAM

DIMS = Option("dims", int, 64, "sketch dimensions for the cosines (0: exact features)", low=0, high=65536)
_BLOCK = 128


@torch.no_grad()
def sketch(features: torch.Tensor, dims: int, seed: int = 0) -> torch.Tensor:
    """Unit-normalised ``features`` ``[V, D]``, projected to ``dims`` dimensions by a seeded orthonormal map and
    renormalised (``dims = 0`` or ``dims ≥ D``: the unit features themselves)."""
    d = features.shape[-1]
    if dims <= 0 or dims >= d:
        return torch.nn.functional.normalize(features.float(), dim=-1)
    # the projection is linear and the result is renormalised, so normalising the inputs first changes nothing
    return torch.nn.functional.normalize(features.float() @ _projection(d, dims, seed).to(features.device), dim=-1)


@functools.lru_cache(maxsize=8)
def _projection(d: int, dims: int, seed: int) -> torch.Tensor:
    """A seeded ``d × dims`` matrix with orthonormal columns (the same on every call and machine)."""
    g = torch.Generator(device="cpu").manual_seed(seed * 7919 + d)
    return torch.linalg.qr(torch.randn(d, dims, generator=g))[0]


def _first_diverse(f: torch.Tensor) -> int:
    """``argmax_i min_{j≠i} (1 − cos(i, j))`` = ``argmin_i max_{j≠i} cos(i, j)``, in row blocks."""
    v = f.shape[0]
    if v == 1:
        return 0
    nearest = torch.empty(v, device=f.device)
    for s in range(0, v, _BLOCK):
        sim = f[s:s + _BLOCK] @ f.T
        rows = torch.arange(sim.shape[0], device=f.device)
        sim[rows, rows + s] = float("-inf")
        nearest[s:s + _BLOCK] = sim.amax(1)
    # fl(1 - x) is monotone, so 1 - max_j sim equals min_j (1 - sim) exactly: the exact selector's tie-breaking
    return int((1.0 - nearest).argmax())


@torch.no_grad()
def greedy(f: torch.Tensor, k: int, imp: torch.Tensor | None = None, lam: float = 0.0) -> torch.Tensor:
    """Incremental MMR on unit features ``f`` ``[V, d]``: picks ``argmax λ·imp_i − (1−λ)·max_{s∈S} cos(i, s)``; with
    ``λ = 0`` the first pick is DivPrune's. Returns the ``k`` picks sorted."""
    v = f.shape[0]
    k = min(k, v)
    max_sim, got, tmp, obj = (torch.empty(v, device=f.device) for _ in range(4))
    picks: list[int] = []
    chosen = torch.zeros(v, dtype=torch.bool, device=f.device)
    gain = torch.zeros(v, device=f.device) if imp is None or lam == 0 else lam * imp.float()
    c = 1.0 - lam
    for step in range(k):
        if step == 0:
            i = _first_diverse(f) if lam == 0 else int(gain.argmax())
        elif lam == 0:  # the exact selector's argmax of −max_sim: the first argmin of max_sim (picks hold +inf)
            i = int(max_sim.argmin())
        else:  # same arithmetic as the exact selector: gain − (c · max_sim), chosen ones excluded
            torch.sub(gain, torch.mul(max_sim, c, out=tmp), out=obj)
            i = int(obj.masked_fill_(chosen, float("-inf")).argmax())
        picks.append(i)
        chosen[i] = True
        torch.mv(f, f[i], out=got)
        if step == 0:
            max_sim.copy_(got)
        else:
            torch.maximum(max_sim, got, out=max_sim)
        if lam == 0:  # a running maximum keeps +inf, so a pick drops out of the argmin without a mask
            max_sim[i] = float("inf")
    return torch.tensor(picks, dtype=torch.long, device=f.device).sort().values


def _importance(scores: torch.Tensor) -> torch.Tensor:
    s = scores.float()
    return (s - s.min()) / (s.max() - s.min()).clamp(min=1e-12)


def _batched(lam_default: float | None) -> Any:
    def run(scores: torch.Tensor, features: torch.Tensor, valid: torch.Tensor, ks: list[int], dims: int = 64,
            lam: float | None = None) -> list[torch.Tensor]:
        out = []
        for j, k in enumerate(ks):
            idx = valid[j].nonzero().squeeze(1)
            lam_j = lam_default if lam_default is not None else (0.5 if lam is None else lam)
            picks = greedy(sketch(features[j, idx], dims), k, _importance(scores[j, idx]), lam_j)
            out.append(idx[picks])
        return out
    return run


@SELECTORS.register("maxmin_fast", options=[DIMS], needs_features=True, batched=_batched(0.0),
                    summary="DivPrune max-min without the V×V matrix (sketched cosines, incremental greedy)")
def maxmin_fast(scores: torch.Tensor, features: torch.Tensor | None, k: int, *, dims: int = 64) -> torch.Tensor:
    """DivPrune's farthest-point selection at video scale (see the module docstring); ``dims = 0``: exact picks."""
    return greedy(sketch(features, dims), k)


@SELECTORS.register("mmr_fast", options=[LAM, DIMS], needs_features=True, batched=_batched(None),
                    summary="IDPruner-style MMR without the V×V matrix (sketched cosines, incremental greedy)")
def mmr_fast(scores: torch.Tensor, features: torch.Tensor | None, k: int, *, lam: float = 0.5,
             dims: int = 64) -> torch.Tensor:
    """MMR at video scale: ``argmax λ·imp_i − (1−λ)·max_{s∈S} cos(i, s)`` on sketched cosines; ``dims = 0``: exact
    picks of :func:`tokenprune.selection.mmr`."""
    return greedy(sketch(features, dims), k, _importance(scores), lam)
