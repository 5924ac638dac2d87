"""Analytic language-model prefill FLOPs (2 FLOPs per multiply-accumulate)."""
from __future__ import annotations

from typing import Any


def _dims(cfg: Any) -> tuple[int, int, int, int]:
    d = cfg.hidden_size
    hd = getattr(cfg, "head_dim", None) or d // cfg.num_attention_heads
    return d, cfg.num_attention_heads * hd, getattr(cfg, "num_key_value_heads", cfg.num_attention_heads) * hd, \
        cfg.intermediate_size


def _flops(n: int, d: int, dq: int, dkv: int, m: int) -> int:
    return 2 * n * d * (dq + 2 * dkv) + 2 * n * dq * d + 4 * n * n * dq + 6 * n * d * m


def layer_flops(n: int, cfg: Any) -> int:
    """FLOPs of one decoder layer over ``n`` tokens:
    q/k/v/o projections ``2n·d·(d_q + 2·d_kv) + 2n·d_q·d``, scores and weighted sum ``2·2·n²·d_q`` (full square),
    gated MLP ``2·3·n·d·m``; norms, rotary and softmax are ignored."""
    return _flops(n, *_dims(cfg))


def prefill_flops(tokens_per_layer: list[int], cfg: Any) -> int:
    """Sum of :func:`layer_flops` over layers, given the token count each layer sees (the config is read once)."""
    dims = _dims(cfg)
    return sum(_flops(n, *dims) for n in tokens_per_layer)
