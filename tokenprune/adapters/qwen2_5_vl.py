"""Qwen2.5-VL: like Qwen2-VL (M-RoPE with absolute-time temporal ids), window attention in the vision tower."""
from __future__ import annotations

from typing import Any

from .base import register
from .qwen2_vl import Qwen2VLAdapter


@register
class Qwen2_5VLAdapter(Qwen2VLAdapter):
    model_types = ("qwen2_5_vl",)
    hf_class = "Qwen2_5_VLForConditionalGeneration"
    vllm_models = {"Qwen2_5_VLForConditionalGeneration": "tokenprune.integrations.vllm.qwen_vl:TokenpruneQwen2_5_VL"}

    @staticmethod
    def tiny_vision(hidden: int) -> dict[str, Any]:
        return dict(depth=2, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                    in_channels=3, intermediate_size=64, out_hidden_size=hidden, window_size=56,
                    fullatt_block_indexes=[1])
