"""``entropy`` scorer (EntropyPrune): each visual token's contribution to the matrix entropy of the features."""
from __future__ import annotations

import torch

from ..registry import SCORERS, Option
from .view import TokenView


def matrix_entropy(z: torch.Tensor) -> torch.Tensor:
    """``S(Z) = −Σ p_i log p_i`` with ``p`` the eigenvalues of the trace-normalised Gram matrix of the rows of ``z``.

    Uses the smaller of ``Z Zᵀ`` (V×V) and ``Zᵀ Z`` (D×D): both have the same nonzero spectrum.
    """
    z = z.double()
    gram = z @ z.T if z.shape[0] <= z.shape[1] else z.T @ z
    return _entropy_from_eigs(torch.linalg.eigvalsh(gram))


def _entropy_from_eigs(ev: torch.Tensor) -> torch.Tensor:
    ev = ev.clamp(min=0)
    p = ev / ev.sum(-1, keepdim=True).clamp(min=1e-300)
    return -(torch.where(p > 0, p * p.clamp(min=1e-300).log(), torch.zeros_like(p))).sum(-1)


def _downdated_eigs(d: torch.Tensor, c: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Eigenvalues of ``diag(d) − c_i c_iᵀ`` for every row ``c_i``: batched ``r×r`` symmetric eigensolves."""
    out = []
    base = torch.diag(d)
    for a in range(0, c.shape[0], chunk):
        ci = c[a:a + chunk]
        out.append(torch.linalg.eigvalsh(base - ci[:, :, None] * ci[:, None, :]))
    return torch.cat(out)


def leave_one_out_entropy(z: torch.Tensor, rank: int | None = None) -> torch.Tensor:
    """``[V]``: ``S(Z) − S(Z without row i)`` for every row, from ONE decomposition of ``Z`` and a secular solve.

    With ``Z = U Σ Wᵀ`` (via the smaller Gram), rows live in the span of the top right-singular vectors, so
    ``Z̃ = Z W_r`` (``r`` = numerical rank) is lossless and ``Z̃ᵀZ̃ = Σ²`` is diagonal: removing row ``i`` leaves
    ``Σ² − z̃_i z̃_iᵀ``, whose eigenvalues (:func:`_downdated_eigs`) are the nonzero spectrum of ``Z_{−i}``'s Gram.
    ``rank`` caps ``r`` to the leading directions (the values are then the exact leave-one-out of that rank-``r``
    sketch). Computed in float64.
    """
    z = z.double()
    if z.shape[0] <= z.shape[1]:
        ev, u = torch.linalg.eigh(z @ z.T)  # Z Zᵀ = U Σ² Uᵀ -> Z̃ = U Σ
        ev = ev.clamp(min=0)
        coords = u * ev.sqrt()
    else:
        ev, w = torch.linalg.eigh(z.T @ z)
        ev = ev.clamp(min=0)
        coords = z @ w
    ev, coords = ev.double(), coords.double()
    keep = ev > ev.max() * 1e-12
    ev, coords = ev[keep], coords[:, keep]
    if rank is not None and ev.numel() > rank:
        ev, coords = ev[-rank:], coords[:, -rank:]
    return _entropy_from_eigs(ev) - _entropy_from_eigs(_downdated_eigs(ev, coords))


@SCORERS.register("entropy", captures={"features"},
                  options=[Option("rank", int, 64, "leading directions of the leave-one-out sketch (None: exact)",
                                  low=1, none_ok=True)])
def entropy_scores(view: TokenView, *, rank: int | None = 64) -> torch.Tensor:
    """EntropyPrune: a token's information value ``S(Z) − S(Z without it)`` (see :func:`leave_one_out_entropy`),
    per image, on this stage's visual features; higher = removing it loses more entropy = keep."""
    feats = view.features
    out = torch.zeros(view.visual_mask.shape, dtype=torch.float32, device=feats.device)
    for r, m in view.item_masks():
        out[r, m] = leave_one_out_entropy(feats[r][m], rank).float()
    return out

