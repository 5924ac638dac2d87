"""LLaVA-1.5 under vLLM with visual tokens pruned before the LLM (1-D positions).

The processor emits K placeholders per image (``num_kept`` of the tower's token count) and the model returns exactly
K embedding rows per image, chosen by tokenprune's scorer/selector/reducer on the projector output.
"""
from __future__ import annotations

from vllm.model_executor.models.llava import (LlavaDummyInputsBuilder, LlavaForConditionalGeneration,
                                              LlavaMultiModalProcessor, LlavaProcessingInfo)
from vllm.multimodal import MULTIMODAL_REGISTRY

from .common import config_from_env, num_kept, select_rows


class TokenpruneLlavaInfo(LlavaProcessingInfo):
    def get_num_image_tokens(self, *, image_width: int, image_height: int) -> int:
        n = super().get_num_image_tokens(image_width=image_width, image_height=image_height)
        cfg = config_from_env()
        return num_kept(n, cfg) if cfg is not None else n


@MULTIMODAL_REGISTRY.register_processor(LlavaMultiModalProcessor, info=TokenpruneLlavaInfo,
                                        dummy_inputs=LlavaDummyInputsBuilder)
class TokenpruneLlava(LlavaForConditionalGeneration):
    """vLLM's LLaVA whose image embeddings are pruned per image before they reach the LLM."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:  # vLLM passes arguments by this signature
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._tp_config = config_from_env()

    def embed_multimodal(self, **kwargs: object):
        embeds = super().embed_multimodal(**kwargs)
        if self._tp_config is None or (isinstance(embeds, (list, tuple)) and len(embeds) == 0):
            return embeds
        out = []
        for e in embeds:  # one [n, D] tensor per image
            rows = select_rows(e, self._tp_config)
            expected = num_kept(e.shape[0], self._tp_config)
            if rows.shape[0] != expected:  # vLLM's scatter does not always catch a count mismatch
                raise RuntimeError(f"tokenprune: {rows.shape[0]} rows for an image with {expected} placeholders")
            out.append(rows)
        return out
