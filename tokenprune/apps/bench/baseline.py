"""The FastV-reference-style peer baseline: layer K-1 runs eager attention and returns its attention weights, and the
stage at layer K ranks visual tokens by the last query's row of that map (what FastV's code does with
``output_attentions``), instead of tokenprune's q/k recomputation under SDPA."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from ...adapters import get_adapter
from ...registry import SCORERS
from ...scoring.view import TokenView

_CAPTURED: dict[str, torch.Tensor] = {}


def _eager_previous_layer(view: TokenView) -> torch.Tensor:
    """Mean over heads of layer K-1's materialised attention weights, last valid query row, at the visual keys."""
    w = _CAPTURED.pop("weights")  # [B, H, n, n]
    n = view.valid.shape[1]
    last = (torch.arange(n, device=view.valid.device) * view.valid).argmax(1)
    rows = w.float().mean(1)[torch.arange(w.shape[0]), last]  # [B, n]
    return torch.gather(rows, 1, view.visual_index)


@contextlib.contextmanager
def eager_weights_at(model: torch.nn.Module, layer: int) -> Iterator[None]:
    """Makes LM layer ``layer`` compute eager attention with weights during prefill and keeps the weights."""
    ad = get_adapter(model)
    attn = ad.layers[layer].self_attn
    cfg = attn.config
    saved: dict[str, Any] = {}

    def pre(module: Any, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.shape[1] > 1:  # prefill only, as FastV
            saved["impl"] = cfg._attn_implementation
            cfg._attn_implementation = "eager"

    def post(module: Any, args: tuple, kwargs: dict, out: Any) -> None:
        if "impl" in saved:
            cfg._attn_implementation = saved.pop("impl")
            _CAPTURED["weights"] = out[1]

    handles = [attn.register_forward_pre_hook(pre, with_kwargs=True),
               attn.register_forward_hook(post, with_kwargs=True)]
    try:
        with SCORERS.temporary("_eager_previous_layer", _eager_previous_layer, captures={"lm_attention"},
                               query_dependent=True):
            yield
    finally:
        for h in handles:
            h.remove()
        if "impl" in saved:
            cfg._attn_implementation = saved.pop("impl")
        _CAPTURED.clear()
