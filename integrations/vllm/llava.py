"""LLaVA-1.5 under vLLM with visual tokens pruned before the LLM, at their original 1-D positions.

The processor emits K placeholders per image (``num_kept`` of the tower's token count, with the server's budget or the
request's — ``budgets.py``) and the model returns exactly K embedding rows per image, chosen by tokenprune's
scorer/selector/reducer on the projector output. With the ``cls_attention`` scorer (VisionZip) the scores are the tower's [CLS]->patch attention at the feature layer, read from
that layer's own q/k projection output by a forward hook (no recomputation).

Positions: the model declares vLLM's multi-channel position interface (``SupportsMRoPE``, all channels equal) and
multimodal pruning, so vLLM asks it for the prompt's positions at admission and again once an image's rows are
chosen (``positions.py``); the language model receives one channel, i.e. ordinary 1-D RoPE. Kept tokens keep their
place in the image and the text after an image starts where it does in the dense prompt, as on the HF path.
"""
from __future__ import annotations

import torch

from vllm.model_executor.models.interfaces import SupportsMRoPE
from vllm.model_executor.models.llava import (LlavaDummyInputsBuilder, LlavaForConditionalGeneration,
                                              LlavaMultiModalProcessor, LlavaProcessingInfo)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.parse import ImageEmbeddingItems, ImageProcessorItems
from vllm.multimodal.processing import PromptReplacement

from ...errors import ConfigError, InternalError
from ...scoring.vision import cls_row_attention
from .common import config_from_env, select
from .cpu_runner import request_pruning_plumbing
from .positions import admission_positions, index_channels, kept_positions, split_index
from .processing import BudgetedProcessor, pop_keeps


def dense_image_tokens(config) -> int:
    """Tokens per image of the unpruned LLaVA-1.5 prompt (fixed: the processor resizes every image)."""
    vc = config.vision_config
    n = (vc.image_size // vc.patch_size) ** 2
    return n + (config.vision_feature_select_strategy == "full")


class TokenpruneLlavaInfo(LlavaProcessingInfo):
    def get_mm_max_tokens_per_item(self, seq_len, mm_counts):
        """The unpruned count: vLLM sizes its encoder cache by it, and a request may keep up to all of an image
        (otherwise vLLM would measure the server's budget on its dummy image and refuse larger requests)."""
        return {"image": dense_image_tokens(self.get_hf_config())}


class TokenpruneLlavaProcessor(BudgetedProcessor, LlavaMultiModalProcessor):
    """K placeholders per image (the info's dense count stays the upper bound vLLM sizes its encoder cache by)."""

    def _tp_media_tokens(self, processed, hf_kwargs) -> dict[str, list[int]]:
        if "pixel_values" not in processed:
            return {}
        return {"image": [dense_image_tokens(self.info.get_hf_config())] * len(processed["pixel_values"])}

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        if config_from_env() is None:
            return updates
        image_id = self.info.get_hf_config().image_token_index
        dense = dense_image_tokens(self.info.get_hf_config())

        def image(item_idx: int) -> list[int]:
            images = mm_items.get_items("image", (ImageEmbeddingItems, ImageProcessorItems))  # only when images came
            n = images.get_feature_size(item_idx) if isinstance(images, ImageEmbeddingItems) else dense
            return [image_id] * self._tp_item_keep(out_mm_kwargs, item_idx, n)

        return [PromptReplacement(modality="image", target=[image_id], replacement=image)]


@MULTIMODAL_REGISTRY.register_processor(TokenpruneLlavaProcessor, info=TokenpruneLlavaInfo,
                                        dummy_inputs=LlavaDummyInputsBuilder)
class TokenpruneLlava(LlavaForConditionalGeneration, SupportsMRoPE):
    """vLLM's LLaVA whose image embeddings are pruned per image before they reach the LLM."""

    supports_multimodal_pruning = True

    def __init__(self, *, vllm_config, prefix: str = "") -> None:  # vLLM passes arguments by this signature
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._tp_config = config_from_env()
        self._tp_cls: list[torch.Tensor] = []
        self._tp_dense = dense_image_tokens(self.config)
        if self._tp_config is not None:
            request_pruning_plumbing(self, vllm_config)
        if self._tp_config is not None and "vision_attention" in self._tp_config.stages[0].captures():
            self._hook_cls_attention()

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        if positions.ndim == 2:  # vLLM's per-channel positions; all channels are equal here
            positions = positions[0]
        return super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)

    def get_mrope_input_positions(self, input_tokens: list[int], mm_features) -> tuple[torch.Tensor, int]:
        images = [(f.mm_position.offset, f.mm_position.length) for f in mm_features if f.modality == "image"]
        return admission_positions(len(input_tokens), images, self._tp_dense)

    def recompute_mrope_positions(self, input_ids, multimodal_embeddings, mrope_positions: torch.Tensor,
                                  num_computed_tokens: int):
        split = [split_index(mm) for mm in multimodal_embeddings]
        rows = [r for r, _, _ in split]
        if rows:
            kept = torch.cat([k for _, _, k in split]).unique()
            if kept.numel() != 1:  # one request: every image has the request's budget
                raise InternalError(f"images of one request with different kept counts {kept.tolist()}")
            ids = torch.as_tensor(input_ids)
            mrope_positions = kept_positions(ids, self.config.image_token_index, torch.cat([i for _, i, _ in split]),
                                             mrope_positions, num_computed_tokens, int(kept), self._tp_dense)
        n = mrope_positions.shape[1]
        delta = int(mrope_positions[0, -1]) + 1 - n if n else 0
        return list(rows), mrope_positions, delta

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
        keeps = pop_keeps(kwargs)
        embeds = super().embed_multimodal(**kwargs)
        if self._tp_config is None or (isinstance(embeds, (list, tuple)) and len(embeds) == 0):
            return embeds
        vision: list[torch.Tensor | None] = [None] * len(embeds)
        if "vision_attention" in self._tp_config.stages[0].captures():
            if len(self._tp_cls) != len(embeds):  # e.g. precomputed image embeddings: the tower never ran
                raise InternalError(f"cls_attention captured {len(self._tp_cls)} images for "
                                   f"{len(embeds)} embeddings (image embeddings passed without the vision tower?)")
            vision = list(self._tp_cls)
        if keeps is not None and len(keeps) != len(embeds):
            raise InternalError(f"{len(keeps)} kept counts for {len(embeds)} images")
        out = []
        for i, (e, v) in enumerate(zip(embeds, vision)):  # one [n, D] tensor per image
            rows, index = select(e, self._tp_config, vision=v, keep=None if keeps is None else keeps[i])
            out.append(torch.cat([rows, index_channels(index, rows.shape[0], rows.dtype)], 1))  # stripped by recompute
        return out
