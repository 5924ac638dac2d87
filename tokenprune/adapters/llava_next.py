"""LLaVA-NeXT (anyres): a base view plus high-resolution crops, with ``image_newline`` tokens after each row.

Per-image token counts come from the packed features the model returns (never from fixed offsets); the newline
tokens are part of each image's span and are scored like any other visual token.
"""
from .base import Adapter, register


@register
class LlavaNextAdapter(Adapter):
    model_types = ("llava_next",)
