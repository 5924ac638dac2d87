"""Model-family adapters: the family table, one file per family, registered by ``config.model_type``."""
from . import llava, llava_next, llava_onevision, qwen2_5_vl, qwen2_vl, qwen3_vl  # noqa: F401  (registration)
from .base import ADAPTERS, Adapter, family, get_adapter, register

__all__ = ["ADAPTERS", "Adapter", "family", "get_adapter", "register"]
