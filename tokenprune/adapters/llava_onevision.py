"""LLaVA-OneVision (SigLIP tower + Qwen2 LM; anyres-max images, pooled video frames with a newline token)."""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Adapter, register


@register
class LlavaOnevisionAdapter(Adapter):
    model_types = ("llava_onevision",)
    hf_class = "LlavaOnevisionForConditionalGeneration"
    modalities = ("image", "video")
    vllm_refused = {"LlavaOnevisionForConditionalGeneration": "its anyres tiles, image-newline tokens and pooled "
                    "video frames need per-tile / per-frame budgets in vLLM's processor; not built yet"}

    @staticmethod
    def tiny_config(text: dict[str, Any], ids: dict[str, int]) -> Any:
        import transformers as tf

        sig = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=28,
                   patch_size=14)
        return tf.LlavaOnevisionConfig(vision_config=tf.SiglipVisionConfig(**sig), text_config=tf.Qwen2Config(**text),
                                       image_token_id=ids["image"], video_token_id=ids["video"],
                                       image_grid_pinpoints=[[28, 56], [56, 28], [56, 56]],
                                       vision_feature_layer=-1, pad_token_id=ids["pad"])

    def item_grids(self, counts: list[int], grid_thw: torch.Tensor | None, modality: str = "image",
                   pixels: torch.Tensor | None = None) -> list[tuple[int, int, int] | None]:
        """A video is ``frames × ⌈p/2⌉ × ⌈p/2⌉`` pooled tokens (p = patches per side) plus one trailing newline token;
        images (anyres crops with newlines) have no plain grid."""
        if modality != "video" or pixels is None or pixels.dim() != 5:
            return super().item_grids(counts, grid_thw, modality, pixels)
        vc = self.vlm.config.vision_config
        side = math.ceil(vc.image_size // vc.patch_size / 2)
        frames = int(pixels.shape[1])
        return [(frames, side, side) if n == frames * side * side + 1 else None for n in counts]
