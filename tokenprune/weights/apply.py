"""Applies a :class:`WeightPlan` in place: slices projections, removes blocks, updates the text config."""
from __future__ import annotations

import warnings
from typing import Any

import torch

from ..errors import InputError
from .backbone import Backbone
from .plan import WeightPlan
from .reconstruct import least_squares
from .stats import CalibStats


class SkippedAttention(torch.nn.Module):
    """Stands in for a removed attention sublayer: adds nothing to the residual stream. It still records the step in
    the KV cache (with zero heads, so zero bytes), which keeps the cache's sequence length right for every layer."""

    def __init__(self, layer_idx: int, head_dim: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = head_dim

    def forward(self, hidden_states: torch.Tensor, *args: Any, past_key_values: Any = None, **kwargs: Any):
        if past_key_values is not None:
            b, n = hidden_states.shape[:2]
            empty = hidden_states.new_zeros(b, 0, n, self.head_dim)
            past_key_values.update(empty, empty, self.layer_idx)
        return torch.zeros_like(hidden_states), None


def _rows(linear: torch.nn.Linear, idx: torch.Tensor) -> None:
    linear.weight = torch.nn.Parameter(linear.weight.data[idx].clone(), requires_grad=linear.weight.requires_grad)
    if linear.bias is not None:
        linear.bias = torch.nn.Parameter(linear.bias.data[idx].clone(), requires_grad=linear.bias.requires_grad)
    linear.out_features = len(idx)


def _cols(linear: torch.nn.Linear, idx: torch.Tensor) -> None:
    linear.weight = torch.nn.Parameter(linear.weight.data[:, idx].clone(), requires_grad=linear.weight.requires_grad)
    linear.in_features = len(idx)


def _add_bias(linear: torch.nn.Linear, value: torch.Tensor | None = None) -> None:
    w = linear.weight
    b = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) if value is None else value.to(w)
    if linear.bias is None:
        linear.bias = torch.nn.Parameter(b)
    elif value is not None:
        linear.bias.data += b


def _compensate(linear: torch.nn.Linear, kept: torch.Tensor, mean: torch.Tensor) -> None:
    """FLAP: the removed input channels' mean contribution, W[:, removed] · mean(X[removed]), into the bias."""
    dev = linear.weight.device
    drop = torch.ones(linear.in_features, dtype=torch.bool)
    drop[kept.cpu()] = False
    _add_bias(linear, linear.weight.data[:, drop.to(dev)].double() @ mean[drop].to(dev))


def _refit(linear: torch.nn.Linear, kept: torch.Tensor, stats: Any, spec: Any, bias: bool
           ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Least-squares weights (and bias) for the kept input columns, or None when there is nothing to re-fit (no
    reconstruction requested, or no column removed: a ratio of 0 stays bit-identical)."""
    if not spec.reconstructs or len(kept) == linear.in_features:
        return None
    if stats is None or stats.gram is None:
        raise InputError("stats: reconstruction needs calibration statistics with Gram matrices")
    return least_squares(linear.weight, stats.gram, stats.total, stats.count, kept, spec.damp, bias)


def _set_refit(linear: torch.nn.Linear, refit: tuple[torch.Tensor, torch.Tensor | None] | None) -> None:
    if refit is None:
        return
    w, b = refit
    linear.weight.data = w.to(linear.weight)
    if b is not None:
        _add_bias(linear, b)


def _head_index(heads: list[int], hd: int, device: torch.device) -> torch.Tensor:
    return (torch.tensor(heads, device=device)[:, None] * hd + torch.arange(hd, device=device)).reshape(-1)


def bias_flags(bb: Backbone, plan: WeightPlan) -> tuple[bool, bool]:
    """(mlp_bias, attention_bias) the pruned config will carry for FLAP bias compensation."""
    spec = plan.spec
    on = spec.bias_compensation if spec.bias_compensation is not None else spec.method == "flap"
    heads_pruned = spec.kv_groups > 0 or spec.q_heads > 0
    if on and not bb.bias_config and (spec.mlp > 0 or heads_pruned):
        warnings.warn(f"FLAP bias compensation is off: {bb.config.model_type} configs cannot hold output biases",
                      stacklevel=3)
        on = False
    return on and spec.mlp > 0, on and heads_pruned


def apply_plan(bb: Backbone, plan: WeightPlan, stats: CalibStats | None = None) -> None:
    """Slices every kept layer, drops removed blocks and updates the text config (stock: uniform widths)."""
    mlp_bias, attn_bias = bias_flags(bb, plan)
    if (mlp_bias or attn_bias) and stats is None:
        raise InputError("stats: bias compensation needs the calibration statistics")
    hd, cfg = bb.head_dim, bb.config
    new_layers = []
    for new_idx, lp in enumerate(plan.layers):
        layer = bb.layers[lp.index]
        dev = layer.mlp.down_proj.weight.device
        keep = torch.tensor(lp.mlp_keep, device=dev)
        mlp = layer.mlp
        refit = _refit(mlp.down_proj, keep, stats.mlp[lp.index] if stats else None, plan.spec, mlp_bias)
        if mlp_bias and refit is None:
            _compensate(mlp.down_proj, keep, stats.mlp[lp.index].mean)
        _rows(mlp.gate_proj, keep)
        _rows(mlp.up_proj, keep)
        _cols(mlp.down_proj, keep)
        _set_refit(mlp.down_proj, refit)
        if mlp_bias:
            _add_bias(mlp.gate_proj)
            _add_bias(mlp.up_proj)
        attn = layer.self_attn
        q_idx = _head_index(lp.heads_keep, hd, dev)
        kv_idx = _head_index(lp.kv_keep, hd, dev)
        refit = _refit(attn.o_proj, q_idx, stats.attn[lp.index] if stats else None, plan.spec, attn_bias)
        if attn_bias and refit is None:
            _compensate(attn.o_proj, q_idx, stats.attn[lp.index].mean)
        _rows(attn.q_proj, q_idx)
        _rows(attn.k_proj, kv_idx)
        _rows(attn.v_proj, kv_idx)
        _cols(attn.o_proj, q_idx)
        _set_refit(attn.o_proj, refit)
        if attn_bias:
            for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
                _add_bias(lin)
        attn.num_key_value_groups = len(lp.heads_keep) // len(lp.kv_keep)
        attn.layer_idx = new_idx
        for name in ("num_heads", "num_attention_heads"):
            if hasattr(attn, name):
                setattr(attn, name, len(lp.heads_keep))
        if hasattr(attn, "num_key_value_heads"):
            attn.num_key_value_heads = len(lp.kv_keep)
        if not lp.attention:
            layer.self_attn = SkippedAttention(new_idx, hd)
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = new_idx
        new_layers.append(layer)
    bb.lm.layers = torch.nn.ModuleList(new_layers)
    first = plan.layers[0]
    if len(first.heads_keep) != bb.heads or len(first.kv_keep) != bb.kv_heads:
        cfg.head_dim = hd  # explicit, now that hidden_size / num_attention_heads no longer gives it
        cfg.num_attention_heads = len(first.heads_keep)
        cfg.num_key_value_heads = len(first.kv_keep)
    if plan.spec.export == "stock":
        cfg.intermediate_size = len(first.mlp_keep)
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = [cfg.layer_types[lp.index] for lp in plan.layers]
    cfg.num_hidden_layers = len(plan.layers)
    if mlp_bias:
        cfg.mlp_bias = True
    if attn_bias:
        cfg.attention_bias = True
