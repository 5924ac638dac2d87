"""Qwen2.5-VL: like Qwen2-VL (M-RoPE with absolute-time temporal ids), window attention in the vision tower."""
from .base import register
from .qwen2_vl import Qwen2VLAdapter


@register
class Qwen2_5VLAdapter(Qwen2VLAdapter):
    model_types = ("qwen2_5_vl",)
