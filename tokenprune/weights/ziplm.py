"""ZipLM-style selection: each layer's MLP channels, KV groups and query heads chosen by structured OBS.

Channels of ``down_proj``'s input (and head blocks of ``o_proj``'s input) are removed greedily — the one whose
removal costs the least output error after the optimal update of the others (:func:`.reconstruct.obs_greedy`),
``1/32`` of the removals per round — down to the plan's uniform width / head counts. Scores encode the outcome for
the planner: the survivors score above every removed unit; removed units score by removal order.
"""
from __future__ import annotations

from typing import Any

import torch

from .reconstruct import inverse_hessian, obs_greedy
from .stats import Running

ROUNDS = 32


def _scores(n: int, removed: list[int]) -> torch.Tensor:
    s = torch.full((n,), float(n + 1), dtype=torch.float64)
    for pos, i in enumerate(removed):
        s[i] = float(pos)
    return s


def ziplm_scores(layer: Any, mlp: Running, attn: Running, spec: Any, bb: Any
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(MLP channel, query head, KV group) scores of one layer for ``spec``'s uniform plan."""
    m = bb.intermediate
    remove = m - spec.mlp_width(m)
    w = layer.mlp.down_proj.weight.detach().double().cpu().clone()
    order = obs_greedy(w, inverse_hessian(mlp.gram, spec.damp), [torch.tensor([j]) for j in range(m)], remove,
                       per_step=max(1, remove // ROUNDS)) if remove else []
    mlp_s = _scores(m, order)
    heads, kv, hd = bb.heads, bb.kv_heads, bb.head_dim
    rep = heads // kv
    head_s = torch.full((heads,), float(heads + 1), dtype=torch.float64)
    group_s = torch.full((kv,), float(kv + 1), dtype=torch.float64)
    if spec.kv_groups or spec.q_heads:
        w = layer.self_attn.o_proj.weight.detach().double().cpu().clone()
        hinv = inverse_hessian(attn.gram, spec.damp)
        cols = lambda hs: torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in hs])  # noqa: E731
        groups = [cols(range(g * rep, (g + 1) * rep)) for g in range(kv)]
        gone = obs_greedy(w, hinv, groups, spec.kv_groups)
        group_s = _scores(kv, gone)
        per_head = [cols([h]) for h in range(heads)]
        pos = 0
        for g in (g for g in range(kv) if g not in gone):
            out = obs_greedy(w, hinv, per_head, spec.q_heads, alive=list(range(g * rep, (g + 1) * rep)))
            for h in out:
                head_s[h] = float(pos)
                pos += 1
    return mlp_s, head_s, group_s
