"""Keeping the surviving weights optimal after structured removal (least squares / structured OBS).

A consuming projection ``Y = W X`` (``down_proj`` for MLP channels, ``o_proj`` for heads) loses the input channels
outside ``S``. With the calibration Gram matrix ``G = Σ x xᵀ`` (float64, gathered during calibration), the
surviving weights that minimise ``Σ ‖W x − W' x_S − b‖²`` are

    [W' b] = W [G_{:,S}  s] · ([[G_SS, s_S], [s_Sᵀ, n]] + λ I)⁻¹         (s = Σ x, n = tokens; b only with a bias)

with ``λ = damp · mean(diag)`` (damping; 0 gives the exact least-squares optimum). ZipLM-style selection removes
input groups greedily by the structured-OBS saliency — the output error of removing a group *after* the optimal
update of the rest — ``tr(W_G (H⁻¹_GG)⁻¹ W_Gᵀ)`` with ``H = G + λ I``; after each removal ``W`` and ``H⁻¹`` are
updated (``W ← W − W_G (H⁻¹_GG)⁻¹ H⁻¹_{G,:}``, ``H⁻¹ ← H⁻¹ − H⁻¹_{:,G} (H⁻¹_GG)⁻¹ H⁻¹_{G,:}``).
"""
from __future__ import annotations

import torch

from ..errors import InputError


def _damped(m: torch.Tensor, damp: float) -> torch.Tensor:
    if damp:
        m = m + damp * m.diagonal().mean().clamp_min(1e-12) * torch.eye(m.shape[0], dtype=m.dtype)
    return m


def least_squares(weight: torch.Tensor, gram: torch.Tensor, total: torch.Tensor, count: int, keep: torch.Tensor,
                  damp: float = 0.01, bias: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W', b)``: the surviving columns ``keep`` of ``weight`` (out, in) re-fitted to the dense output on the
    calibration statistics (``b`` is None unless ``bias``)."""
    if count < 1:
        raise InputError("reconstruction: no calibration tokens were seen")
    w = weight.detach().double().cpu()
    k = keep.cpu()
    g = gram.double()
    cols = g[:, k]
    m = g[k][:, k]
    if bias:
        s = total.double()
        cols = torch.cat([cols, s[:, None]], 1)
        m = torch.cat([torch.cat([m, s[k][:, None]], 1),
                       torch.cat([s[k], torch.tensor([float(count)], dtype=torch.float64)])[None]], 0)
    rhs = (w @ cols).T  # (k[+1], out)
    m = _damped(m, damp)
    try:
        sol = torch.linalg.solve(m, rhs)
    except RuntimeError:  # singular without damping (a channel never active): the minimum-norm solution
        sol = torch.linalg.lstsq(m, rhs, driver="gelsd").solution
    sol = sol.T
    return (sol[:, :-1], sol[:, -1]) if bias else (sol, None)


def obs_greedy(weight: torch.Tensor, hinv: torch.Tensor, groups: list[torch.Tensor], remove: int,
               alive: list[int] | None = None, per_step: int = 1) -> list[int]:
    """Removes ``remove`` of ``groups`` (column index sets of ``weight``) greedily by structured-OBS saliency,
    ``per_step`` at a time; updates ``weight`` (float64, out × in) and ``hinv`` in place. Returns the removed group
    ids in removal order; ``alive``: the candidates (default all)."""
    cand = list(range(len(groups))) if alive is None else list(alive)
    order: list[int] = []
    while len(order) < remove:
        sal = []
        for gi in cand:
            c = groups[gi]
            block = torch.linalg.inv(hinv[c][:, c])
            wg = weight[:, c]
            sal.append(float((wg @ block * wg).sum()))
        n = min(per_step, remove - len(order))
        picked = [cand[i] for i in torch.tensor(sal).argsort()[:n].tolist()]
        for gi in picked:
            c = groups[gi]
            block = torch.linalg.inv(hinv[c][:, c])
            weight -= weight[:, c] @ block @ hinv[c, :]
            hinv -= hinv[:, c] @ block @ hinv[c, :]
            weight[:, c] = 0.0
            cand.remove(gi)
            order.append(gi)
    return order


def inverse_hessian(gram: torch.Tensor, damp: float) -> torch.Tensor:
    """``(G + λ I)⁻¹`` in float64 (``λ = damp · mean(diag G)``; a floor keeps never-active channels invertible)."""
    g = gram.double()
    lam = max(damp, 1e-8) * g.diagonal().mean().clamp_min(1e-12)
    return torch.linalg.inv(g + lam * torch.eye(g.shape[0], dtype=torch.float64))
