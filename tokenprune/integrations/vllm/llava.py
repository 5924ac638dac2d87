"""LLaVA-1.5 under vLLM with visual tokens pruned before the LLM (1-D positions).

The processor emits K placeholders per image (``num_kept`` of the tower's token count) and the model returns exactly
K embedding rows per image, chosen by tokenprune's scorer/selector/reducer on the projector output. With the
``cls_attention`` scorer (VisionZip) the scores are the tower's [CLS]->patch attention at the feature layer, read from
that layer's own q/k projection output by a forward hook (no recomputation).
"""
from __future__ import annotations

import torch

from vllm.model_executor.models.llava import (LlavaDummyInputsBuilder, LlavaForConditionalGeneration,
                                              LlavaMultiModalProcessor, LlavaProcessingInfo)
from vllm.multimodal import MULTIMODAL_REGISTRY

from ...errors import ConfigError
from ...scoring.vision import cls_row_attention
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
        self._tp_cls: list[torch.Tensor] = []
        if self._tp_config is not None and self._tp_config.stages[0].scorer == "cls_attention":
            self._hook_cls_attention()

    def _hook_cls_attention(self) -> None:
        """Hooks the q/k/v projection of the vision layer whose output the projector reads; each tower call appends
        one ``[V]`` [CLS]->patch attention (mean over heads) per image, as tokenprune's HF LLaVA adapter computes it."""
        cfg = self.config
        layer_sel = cfg.vision_feature_layer
        if not isinstance(layer_sel, int):
            raise ConfigError("vLLM plugin: cls_attention needs a single vision_feature_layer; this model uses "
                              f"{layer_sel!r}")
        h = layer_sel % (cfg.vision_config.num_hidden_layers + 1)  # hidden state h is the output of layer h - 1
        try:
            attn = self.vision_tower.vision_model.encoder.layers[h - 1].self_attn
            qkv = attn.qkv_proj
        except (AttributeError, IndexError) as e:
            raise ConfigError(f"vLLM plugin: cls_attention needs a CLIP vision tower with a fused qkv_proj ({e})") from e
        if h == 0 or attn.num_heads_per_partition != attn.num_heads:
            raise ConfigError("vLLM plugin: cls_attention needs a vision layer before the feature layer and the whole "
                              "tower on one device (no tensor parallelism)")
        drop_cls = cfg.vision_feature_select_strategy == "default"

        def capture(_module, _args, output) -> None:
            q, k, _ = output[0].chunk(3, dim=-1)  # [n, T, E] each
            probs = cls_row_attention(q[:, :1], k, attn.num_heads, attn.scale)
            self._tp_cls.extend(probs[:, 1:] if drop_cls else probs)

        qkv.register_forward_hook(capture)

    def embed_multimodal(self, **kwargs: object):
        self._tp_cls.clear()
        embeds = super().embed_multimodal(**kwargs)
        if self._tp_config is None or (isinstance(embeds, (list, tuple)) and len(embeds) == 0):
            return embeds
        vision: list[torch.Tensor | None] = [None] * len(embeds)
        if self._tp_config.stages[0].scorer == "cls_attention":
            if len(self._tp_cls) != len(embeds):  # e.g. precomputed image embeddings: the tower never ran
                raise RuntimeError(f"tokenprune: cls_attention captured {len(self._tp_cls)} images for "
                                   f"{len(embeds)} embeddings (image embeddings passed without the vision tower?)")
            vision = list(self._tp_cls)
        out = []
        for e, v in zip(embeds, vision):  # one [n, D] tensor per image
            rows = select_rows(e, self._tp_config, vision=v)
            expected = num_kept(e.shape[0], self._tp_config)
            if rows.shape[0] != expected:  # vLLM's scatter does not always catch a count mismatch
                raise RuntimeError(f"tokenprune: {rows.shape[0]} rows for an image with {expected} placeholders")
            out.append(rows)
        return out
