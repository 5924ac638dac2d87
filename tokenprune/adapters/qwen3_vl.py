"""Qwen3-VL: interleaved M-RoPE, q/k norms, and DeepStack visual features added to early LM layers.

DeepStack adds per-layer visual features to the hidden states at the visual positions after each of the first
layers. When tokens were pruned before such a layer, the features of the kept tokens must follow them: the patch
below remaps ``visual_pos_masks`` and the flattened feature rows onto the current (compacted) sequence.
"""
from __future__ import annotations

from typing import Any

import torch

from ..runtime.compact import kept_positions
from .base import register
from .qwen2_vl import Qwen2VLAdapter


@register
class Qwen3VLAdapter(Qwen2VLAdapter):
    model_types = ("qwen3_vl",)
    hf_class = "Qwen3VLForConditionalGeneration"
    vllm_models: dict[str, str] = {}
    vllm_refused = {"Qwen3VLForConditionalGeneration": "its DeepStack features (added to the first LM layers at the "
                    "visual positions) would have to follow the kept tokens inside vLLM's model; not built yet"}
    stock_heads = True

    @staticmethod
    def tiny_vision(hidden: int) -> dict[str, Any]:
        return dict(depth=2, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                    in_channels=3, intermediate_size=64, out_hidden_size=hidden, num_position_embeddings=64,
                    deepstack_visual_indexes=[0, 1])

    @staticmethod
    def tiny_rope(text: dict[str, Any]) -> dict[str, Any]:
        return dict(Qwen2VLAdapter.tiny_rope(text), mrope_interleaved=True)

    @classmethod
    def tiny_config(cls, text: dict[str, Any], ids: dict[str, int]) -> Any:
        text = dict(text, head_dim=text["hidden_size"] // text["num_attention_heads"])
        return super().tiny_config(text, ids)

    def attach_extras(self, runtime: Any) -> None:
        lm = self.lm
        original = lm._deepstack_process

        def deepstack_process(hidden: torch.Tensor, visual_pos_masks: torch.Tensor, visual_embeds: torch.Tensor):
            seg = runtime.current_compaction()
            if seg is not None:
                dense_idx, valid = seg
                visual_pos_masks = visual_pos_masks.to(dense_idx.device)
                kept = kept_positions(dense_idx, valid, visual_pos_masks.shape[1])
                visual_embeds = visual_embeds[kept[visual_pos_masks]]
                visual_pos_masks = torch.gather(visual_pos_masks, 1, dense_idx) & valid
            return original(hidden, visual_pos_masks, visual_embeds)

        runtime.hooks.patch(lm, "_deepstack_process", deepstack_process)
