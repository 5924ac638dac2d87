"""Selectors: ``select(scores[V], features[V, D] | None, k, **options) -> LongTensor[k]`` sorted ascending.

Selectors that need features set ``uses_features = True``; the runtime then passes the stage's visual features.
"""
from __future__ import annotations

import torch

from .errors import ConfigError
from .registry import SELECTORS


@SELECTORS.register("topk")
def topk(scores: torch.Tensor, features: torch.Tensor | None, k: int) -> torch.Tensor:
    """The ``k`` highest scores (ties broken by lower index), returned in original order."""
    order = torch.argsort(scores.float(), descending=True, stable=True)
    return order[:k].sort().values


def _cosine(features: torch.Tensor) -> torch.Tensor:
    f = torch.nn.functional.normalize(features.float(), dim=-1)
    return f @ f.T


def _first_diverse(sim: torch.Tensor) -> int:
    """DivPrune's first pick: the token whose nearest neighbour (cosine distance) is farthest."""
    dist = 1.0 - sim
    dist.fill_diagonal_(float("inf"))
    return int(dist.min(1).values.argmax())


@SELECTORS.register("maxmin")
def maxmin(scores: torch.Tensor, features: torch.Tensor | None, k: int) -> torch.Tensor:
    """DivPrune (Alvar et al., CVPR 2025): farthest-point selection on cosine distance ``1 - cos(x_i, x_j)``.

    First pick: ``argmax_i min_{j≠i} d(i, j)``; then repeatedly ``argmax_i min_{s∈S} d(i, s)``. Scores are ignored.
    """
    return mmr(scores, features, k, lam=0.0)


@SELECTORS.register("mmr")
def mmr(scores: torch.Tensor, features: torch.Tensor | None, k: int, *, lam: float = 0.5) -> torch.Tensor:
    """Maximal marginal relevance (IDPruner): greedily pick ``argmax λ·imp_i − (1−λ)·max_{s∈S} cos(x_i, x_s)``.

    ``imp`` = the stage's scores min-max normalised to [0, 1] over the image. ``λ = 1`` is top-k; ``λ = 0`` is pure
    diversity (identical to ``maxmin``, including its first pick).
    """
    v = scores.shape[0]
    sim = _cosine(features)
    s = scores.float()
    span = (s.max() - s.min()).clamp(min=1e-12)
    imp = (s - s.min()) / span
    chosen = torch.zeros(v, dtype=torch.bool, device=scores.device)
    max_sim = torch.zeros(v, device=scores.device)
    picks = []
    for step in range(k):
        if step == 0 and lam == 0.0:
            i = _first_diverse(sim.clone())
        else:
            obj = lam * imp - (1.0 - lam) * max_sim
            obj = obj.masked_fill(chosen, float("-inf"))
            i = int(torch.argmax(obj))  # first maximum: ties go to the lower index
        picks.append(i)
        chosen[i] = True
        max_sim = torch.maximum(max_sim, sim[i]) if step else sim[i].clone()
    return torch.tensor(sorted(picks), dtype=torch.long, device=scores.device)


def _check_mmr(*, lam: float = 0.5) -> None:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= float(lam) <= 1.0:
        raise ConfigError(f"Stage.lam: got {lam!r}; allowed: a number in [0, 1]")


maxmin.uses_features = True  # type: ignore[attr-defined]
mmr.uses_features = True  # type: ignore[attr-defined]
mmr.check_options = _check_mmr  # type: ignore[attr-defined]


def effective_rank(features: torch.Tensor) -> float:
    """Roy & Vetterli effective rank: ``exp(H(p))`` with ``p`` the normalised singular values of the centred features."""
    x = features.float() - features.float().mean(0, keepdim=True)
    gram = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x  # the smaller Gram has the same nonzero spectrum
    s = torch.linalg.eigvalsh(gram.double()).clamp(min=0).sqrt()
    p = s / s.sum().clamp(min=1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@SELECTORS.register("adaptive")
def adaptive(scores: torch.Tensor, features: torch.Tensor | None, k: int, *, lam_min: float = 0.2,
             lam_max: float = 1.0) -> torch.Tensor:
    """AgilePruner-like: per image, MMR with ``λ = lam_max − (lam_max − lam_min) · r`` where ``r`` is the effective
    rank of the image's features divided by ``min(V, D)``. Simple images (evidence concentrated, low rank) lean on
    the scores (attention); complex ones (evidence spread, high rank) lean on diversity."""
    r = effective_rank(features) / max(1, min(features.shape))
    lam = lam_max - (lam_max - lam_min) * min(1.0, r)
    return mmr(scores, features, k, lam=lam)


def _check_adaptive(*, lam_min: float = 0.2, lam_max: float = 1.0) -> None:
    for name, v in (("lam_min", lam_min), ("lam_max", lam_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"Stage.{name}: got {v!r}; allowed: a number in [0, 1]")
    if lam_min > lam_max:
        raise ConfigError(f"Stage.lam_min: {lam_min} exceeds lam_max {lam_max}; allowed: lam_min <= lam_max")


adaptive.uses_features = True  # type: ignore[attr-defined]
adaptive.check_options = _check_adaptive  # type: ignore[attr-defined]


@SELECTORS.register("visionzip")
def visionzip(scores: torch.Tensor, features: torch.Tensor | None, k: int, *, contextual: int = 0) -> torch.Tensor:
    """VisionZip: ``k − contextual`` dominant tokens (highest scores) plus ``contextual`` centres spread evenly over
    the remaining tokens (in original order); with the ``merge`` reducer's matching ``contextual`` option the other
    tokens are averaged into those centres, which become the contextual tokens."""
    c = min(contextual, k - 1) if k > 1 else 0
    order = torch.argsort(scores.float(), descending=True, stable=True)
    dominant = order[: k - c]
    if c == 0:
        return dominant.sort().values
    rest = order[k - c:].sort().values
    centres = rest[torch.linspace(0, rest.numel() - 1, c).round().long()]
    return torch.cat([dominant, centres]).sort().values


def _check_visionzip(*, contextual: int = 0) -> None:
    if isinstance(contextual, bool) or not isinstance(contextual, int) or contextual < 0:
        raise ConfigError(f"Stage.contextual: got {contextual!r}; allowed: an int >= 0")


visionzip.check_options = _check_visionzip  # type: ignore[attr-defined]
