"""The language backbone of a VLM, as the weight pruners see it: decoder layers, their projections, the text config.

The vision tower and projector are never touched, and the hidden size never changes (the projector writes it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..adapters import family
from ..errors import UnsupportedModelError

@dataclass
class Backbone:
    model: Any
    lm: Any
    config: Any  # the text config (shared with the LM)

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self.lm.layers

    @property
    def hidden(self) -> int:
        return self.config.hidden_size

    @property
    def heads(self) -> int:
        return self.config.num_attention_heads

    @property
    def kv_heads(self) -> int:
        return self.config.num_key_value_heads or self.heads

    @property
    def head_dim(self) -> int:
        return getattr(self.config, "head_dim", None) or self.hidden // self.heads

    @property
    def intermediate(self) -> int:
        return self.config.intermediate_size

    @property
    def family(self) -> str:
        return self.model.config.model_type

    @property
    def stock_heads(self) -> bool:
        return family(self.family).stock_heads

    @property
    def bias_config(self) -> bool:
        """Whether the text config can switch on MLP/attention output biases (Llama's ``mlp_bias``/``attention_bias``)."""
        return self.config.model_type == "llama"


def supported(model_type: str | None) -> None:
    """Raises :class:`UnsupportedModelError` unless the family table has ``model_type``."""
    try:
        family(model_type)
    except UnsupportedModelError as e:
        raise UnsupportedModelError(f"weight pruning: {e}") from None


def backbone(model: Any) -> Backbone:
    """The backbone view of ``model``; raises :class:`UnsupportedModelError` for other architectures."""
    mt = getattr(getattr(model, "config", None), "model_type", None)
    supported(mt)
    lm = model.model.language_model
    cfg = model.config.text_config
    layer = lm.layers[0]
    for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj", "mlp.down_proj"):
        if layer.get_submodule(name) is None:  # pragma: no cover - get_submodule raises first
            raise UnsupportedModelError(f"weight pruning: layer has no {name}")
    return Backbone(model, lm, cfg)
