"""LLaVA-1.5 (``LlavaForConditionalGeneration``: CLIP tower, MLP projector, Llama/Vicuna LM; 1-D RoPE)."""
from .base import Adapter, register


@register
class LlavaAdapter(Adapter):
    model_types = ("llava",)
