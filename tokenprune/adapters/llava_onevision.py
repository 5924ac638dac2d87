"""LLaVA-OneVision (SigLIP tower + Qwen2 LM; anyres-max images, pooled video frames with a newline token)."""
from .base import Adapter, register


@register
class LlavaOnevisionAdapter(Adapter):
    model_types = ("llava_onevision",)
