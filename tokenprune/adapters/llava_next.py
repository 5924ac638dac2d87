"""LLaVA-NeXT (anyres): a base view plus high-resolution crops, with ``image_newline`` tokens after each row.

Per-image token counts come from the packed features the model returns (never from fixed offsets); the newline
tokens are part of each image's span and are scored like any other visual token.
"""
from __future__ import annotations

from typing import Any

from .base import Adapter, register


@register
class LlavaNextAdapter(Adapter):
    model_types = ("llava_next",)
    hf_class = "LlavaNextForConditionalGeneration"
    vllm_refused = {"LlavaNextForConditionalGeneration": "its anyres tiles and image-newline tokens need per-tile "
                    "budgets in vLLM's processor and the kept tiles' 2-D layout in the model; not built yet"}

    @staticmethod
    def tiny_config(text: dict[str, Any], ids: dict[str, int]) -> Any:
        import transformers as tf

        clip = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=28,
                    patch_size=14, projection_dim=32)
        return tf.LlavaNextConfig(vision_config=tf.CLIPVisionConfig(**clip), text_config=tf.LlamaConfig(**text),
                                  image_token_id=ids["image"], image_grid_pinpoints=[[28, 56], [56, 28], [56, 56]],
                                  pad_token_id=ids["pad"])
