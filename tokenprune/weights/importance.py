"""Importance of MLP channels, query heads and KV groups of one layer (pure functions of weights and statistics).

- ``wanda-sp`` (Wanda, structured): channel j of ``down_proj`` scores mean_i |W[i, j]| · ‖X_j‖₂.
- ``flap`` (FLAP fluctuation): Var(X_j) over calibration tokens · ‖W[:, j]‖₂².
- ``taylor`` (LLM-Pruner, first order): |Σ w·∂L/∂w| over every weight of the channel (gate/up rows, down column).
- ``taylor-pm`` (LLM-Pruner's "vectorized" form, as Torch-Pruning's ``multivariable=True``): |Σ w·g| per matrix,
  averaged over the channel's matrices, so the terms of different matrices cannot cancel.
- ``cfsp`` (CFSP's fine-grained score): per weight, its share of its row's and of its column's absolute sum (RIA-style
  relative importance), summed over the channel's weights in gate/up/down, times ‖X_j‖^½.
- ``ziplm``: chosen by structured OBS (see :mod:`.reconstruct`), not scored here.
A query head sums its ``o_proj`` input channels (and, for Taylor, its ``q_proj`` rows); a KV group sums its query
heads (Taylor adds its ``k_proj``/``v_proj`` rows).
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .stats import Running

METHODS = ("wanda-sp", "flap", "taylor", "taylor-pm", "cfsp", "ziplm")
TAYLOR = ("taylor", "taylor-pm")


def channel_scores(method: str, weight: torch.Tensor, stats: Running) -> torch.Tensor:
    """Per input channel of ``weight`` (out, in) from its input statistics (wanda-sp, flap)."""
    w = weight.detach().double().cpu()
    if method == "wanda-sp":
        return w.abs().mean(0) * stats.norm
    if method == "flap":
        return stats.var * (w * w).sum(0)
    if method == "cfsp":
        return relative(w).sum(0) * stats.norm.sqrt()
    raise ConfigError(f"method: got {method!r}; allowed: {', '.join(METHODS)}")


def relative(w: torch.Tensor) -> torch.Tensor:
    """|w| / (its row's |w| sum) + |w| / (its column's |w| sum) (float64, same shape)."""
    a = w.detach().double().cpu().abs()
    return a / a.sum(1, keepdim=True).clamp_min(1e-30) + a / a.sum(0, keepdim=True).clamp_min(1e-30)


def taylor_rows(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """|Σ w·g| per output row (the first-order loss change if the row is removed, summed without cancellation
    across samples because the gradient was accumulated over all of them first)."""
    return (weight.detach().double().cpu() * grad.double().cpu()).sum(1)


def mlp_scores(method: str, mlp: torch.nn.Module, stats: Running, grads: dict[str, torch.Tensor] | None,
               prefix: str) -> torch.Tensor:
    if method == "cfsp":
        rel = relative(mlp.gate_proj.weight).sum(1) + relative(mlp.up_proj.weight).sum(1)
        return channel_scores(method, mlp.down_proj.weight, stats) + rel * stats.norm.sqrt()
    if method not in TAYLOR:
        return channel_scores(method, mlp.down_proj.weight, stats)
    g = lambda n: grads[f"{prefix}.mlp.{n}.weight"]  # noqa: E731
    parts = [taylor_rows(mlp.gate_proj.weight, g("gate_proj")), taylor_rows(mlp.up_proj.weight, g("up_proj")),
             taylor_rows(mlp.down_proj.weight.T, g("down_proj").T)]
    if method == "taylor-pm":
        return sum(p.abs() for p in parts) / len(parts)
    return sum(parts).abs()


def head_scores(method: str, attn: torch.nn.Module, stats: Running, grads: dict[str, torch.Tensor] | None,
                prefix: str, heads: int, head_dim: int) -> torch.Tensor:
    """One score per query head."""
    if method not in TAYLOR:
        return channel_scores(method, attn.o_proj.weight, stats).view(heads, head_dim).sum(1)
    g = lambda n: grads[f"{prefix}.self_attn.{n}.weight"]  # noqa: E731
    q = taylor_rows(attn.q_proj.weight, g("q_proj")).view(heads, head_dim).sum(1)
    o = taylor_rows(attn.o_proj.weight.T, g("o_proj").T).view(heads, head_dim).sum(1)
    return (q.abs() + o.abs()) / 2 if method == "taylor-pm" else (q + o).abs()


def group_scores(method: str, attn: torch.nn.Module, head: torch.Tensor, grads: dict[str, torch.Tensor] | None,
                 prefix: str, kv_heads: int, head_dim: int) -> torch.Tensor:
    """One score per KV group: its query heads' scores (Taylor: plus its K/V rows)."""
    s = head.view(kv_heads, -1).sum(1)
    if method in TAYLOR:
        g = lambda n: grads[f"{prefix}.self_attn.{n}.weight"]  # noqa: E731
        k = taylor_rows(attn.k_proj.weight, g("k_proj")).view(kv_heads, head_dim).sum(1)
        v = taylor_rows(attn.v_proj.weight, g("v_proj")).view(kv_heads, head_dim).sum(1)
        s = s + ((k.abs() + v.abs()) / 2 if method == "taylor-pm" else (k + v).abs())
    return s
