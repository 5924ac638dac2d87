"""Importance of MLP channels, query heads and KV groups of one layer (pure functions of weights and statistics).

- ``wanda-sp`` (Wanda, structured): channel j of ``down_proj`` scores mean_i |W[i, j]| · ‖X_j‖₂.
- ``flap`` (FLAP fluctuation): Var(X_j) over calibration tokens · ‖W[:, j]‖₂².
- ``taylor`` (LLM-Pruner, first order): |Σ w·∂L/∂w| over every weight of the channel (gate/up rows, down column).
A query head sums its ``o_proj`` input channels (and, for Taylor, its ``q_proj`` rows); a KV group sums its query
heads (Taylor adds its ``k_proj``/``v_proj`` rows).
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .stats import Running

METHODS = ("wanda-sp", "flap", "taylor")


def channel_scores(method: str, weight: torch.Tensor, stats: Running) -> torch.Tensor:
    """Per input channel of ``weight`` (out, in) from its input statistics (wanda-sp, flap)."""
    w = weight.detach().double().cpu()
    if method == "wanda-sp":
        return w.abs().mean(0) * stats.norm
    if method == "flap":
        return stats.var * (w * w).sum(0)
    raise ConfigError(f"method: got {method!r}; allowed: wanda-sp, flap, taylor")


def taylor_rows(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """|Σ w·g| per output row (the first-order loss change if the row is removed, summed without cancellation
    across samples because the gradient was accumulated over all of them first)."""
    return (weight.detach().double().cpu() * grad.double().cpu()).sum(1)


def mlp_scores(method: str, mlp: torch.nn.Module, stats: Running, grads: dict[str, torch.Tensor] | None,
               prefix: str) -> torch.Tensor:
    if method != "taylor":
        return channel_scores(method, mlp.down_proj.weight, stats)
    g = lambda n: grads[f"{prefix}.mlp.{n}.weight"]  # noqa: E731
    s = taylor_rows(mlp.gate_proj.weight, g("gate_proj")) + taylor_rows(mlp.up_proj.weight, g("up_proj"))
    s = s + taylor_rows(mlp.down_proj.weight.T, g("down_proj").T)
    return s.abs()


def head_scores(method: str, attn: torch.nn.Module, stats: Running, grads: dict[str, torch.Tensor] | None,
                prefix: str, heads: int, head_dim: int) -> torch.Tensor:
    """One score per query head."""
    if method != "taylor":
        return channel_scores(method, attn.o_proj.weight, stats).view(heads, head_dim).sum(1)
    g = lambda n: grads[f"{prefix}.self_attn.{n}.weight"]  # noqa: E731
    s = taylor_rows(attn.q_proj.weight, g("q_proj")) + taylor_rows(attn.o_proj.weight.T, g("o_proj").T)
    return s.view(heads, head_dim).sum(1).abs()


def group_scores(method: str, attn: torch.nn.Module, head: torch.Tensor, grads: dict[str, torch.Tensor] | None,
                 prefix: str, kv_heads: int, head_dim: int) -> torch.Tensor:
    """One score per KV group: its query heads' scores (Taylor: plus its K/V rows)."""
    s = head.view(kv_heads, -1).sum(1)
    if method == "taylor":
        g = lambda n: grads[f"{prefix}.self_attn.{n}.weight"]  # noqa: E731
        kv = taylor_rows(attn.k_proj.weight, g("k_proj")) + taylor_rows(attn.v_proj.weight, g("v_proj"))
        s = s + kv.view(kv_heads, head_dim).sum(1).abs()
    return s
