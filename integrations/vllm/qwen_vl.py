"""Qwen2-VL and Qwen2.5-VL under vLLM with image and video tokens pruned before the LLM (M-RoPE).

The processor emits K placeholders per image or video (each item's count from its grid and the server's or the
request's budget). The model returns, per item, the kept embedding rows with four extra
channels — the kept tokens' original (t, h, w) positions relative to the item and the item's position span — which
vLLM's multimodal-pruning plumbing (the interface its EVS video pruning uses) turns into the sequence's M-RoPE
positions with ``recompute_mrope_positions``, chunked prefill included. Kept tokens keep their positions and the
text after an item starts where it would in the dense prompt, as on tokenprune's Hugging Face path. A video is one
item, its budget over all its frames (as on the HF path; the selection sees its (t, h, w) grid).
"""
from __future__ import annotations

from functools import partial

import torch
from vllm.model_executor.models.qwen2_5_vl import (Qwen2_5_VLDummyInputsBuilder, Qwen2_5_VLForConditionalGeneration,
                                                   Qwen2_5_VLMultiModalProcessor, Qwen2_5_VLProcessingInfo)
from vllm.model_executor.models.qwen2_vl import (Qwen2VLDummyInputsBuilder, Qwen2VLForConditionalGeneration,
                                                 Qwen2VLMultiModalProcessor, Qwen2VLProcessingInfo)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.processing import PromptReplacement

from ...errors import ConfigError
from .budgets import strip
from .common import config_from_env, select
from .cpu_runner import request_pruning_plumbing
from .positions import mrope_admission_positions, recompute_media_positions
from .processing import BudgetedProcessor, pop_keeps


def media_positions(grid_thw: list[int], merge: int, t_scale: float = 1.0) -> torch.Tensor:
    """``[n, 4]``: (t, h, w) of each LLM token of one item, counted from the item's start, and in the last channel
    the span the item occupies (max position + 1), after which the following text starts — as in the dense prompt."""
    t, h, w = grid_thw[0], grid_thw[1] // merge, grid_thw[2] // merge
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([(tt * t_scale).long(), hh, ww], -1).reshape(-1, 3)
    span = torch.full((pos.shape[0], 1), int(pos.max()) + 1)
    return torch.cat([pos, span], 1)


class _QwenBudgets(BudgetedProcessor):
    """K placeholders per image and per video, K counted by the processor from the item's grid (server or request
    budget)."""

    def _tp_media_tokens(self, processed, hf_kwargs) -> dict[str, list[int]]:
        merge = self.info.get_image_processor(**hf_kwargs).merge_size
        return {m: [int(g.prod()) // merge**2 for g in processed[f"{m}_grid_thw"]]
                for m in ("image", "video") if f"{m}_grid_thw" in processed}

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        if config_from_env() is None:
            return updates
        kwargs = strip(hf_processor_mm_kwargs)
        merge = self.info.get_image_processor(**kwargs).merge_size
        hf = self.info.get_hf_processor(**kwargs)
        vocab = self.info.get_tokenizer().get_vocab()
        ids = {"image": vocab[hf.image_token], "video": vocab[hf.video_token]}

        def media(item_idx: int, modality: str) -> list[int]:
            grid = out_mm_kwargs[modality][item_idx][f"{modality}_grid_thw"].data
            return [ids[modality]] * self._tp_item_keep(out_mm_kwargs, item_idx, int(grid.prod()) // merge**2,
                                                        modality)

        return [PromptReplacement(modality=m, target=[ids[m]], replacement=partial(media, modality=m))
                for m in ("image", "video")]


class TokenpruneQwen2VLProcessor(_QwenBudgets, Qwen2VLMultiModalProcessor):
    pass


class TokenpruneQwen2_5_VLProcessor(_QwenBudgets, Qwen2_5_VLMultiModalProcessor):
    pass


class _PrunedMedia:
    """Shared by both families: image rows selected by tokenprune, positions appended for vLLM's M-RoPE update."""

    supports_multimodal_pruning = True

    def _tp_setup(self, vllm_config) -> None:
        self._tp_config = config_from_env()
        if self._tp_config is None:
            return
        if "vision_attention" in self._tp_config.stages[0].captures():
            raise ConfigError("vLLM plugin: vision-tower attention (cls_attention, or debiased_attention with "
                              "base='cls_attention') is served on vLLM's LLaVA only; for Qwen-VL use norm, uniform, "
                              "random or entropy")
        rate = getattr(vllm_config.model_config.multimodal_config, "video_pruning_rate", None)
        if rate:
            raise ConfigError(f"vLLM plugin: video_pruning_rate={rate} turns on vLLM's own video pruning (EVS), which "
                              "would prune videos a second time; use one of the two")
        request_pruning_plumbing(self, vllm_config)

    def _tp_video_scale(self, video_input, i: int) -> float:
        return 1.0

    def get_mrope_input_positions(self, input_tokens: list[int], mm_features) -> tuple[torch.Tensor, int]:
        """vLLM's own version assumes every item fills its whole grid; with K placeholders per image the text after
        it would be placed wrongly whenever the image's rows never arrive to correct it (a prefix-cache hit)."""
        if self._tp_config is None:
            return super().get_mrope_input_positions(input_tokens, mm_features)
        length = {f.mm_position.offset: f.mm_position.length for f in mm_features}
        items = [(o, length[o], t, h, w, f) for o, t, h, w, f in self.iter_mm_grid_thw(mm_features)]
        return mrope_admission_positions(len(input_tokens), items)

    def recompute_mrope_positions(self, input_ids, multimodal_embeddings, mrope_positions, num_computed_tokens):
        """Positions of this step's media rows from the four channels :meth:`embed_multimodal` appends (and the rows
        without them). Replaces vLLM's EVS update, which assumes pruned videos and takes the engine down when the
        computed prefix ends right after ``<|vision_start|>``."""
        if self._tp_config is None:
            return super().recompute_mrope_positions(input_ids, multimodal_embeddings, mrope_positions,
                                                     num_computed_tokens)
        ids = input_ids if isinstance(input_ids, torch.Tensor) else torch.tensor(input_ids, dtype=torch.long)
        positions, delta = recompute_media_positions(ids, [mm[:, -4:] for mm in multimodal_embeddings],
                                                     mrope_positions, num_computed_tokens,
                                                     (self.config.image_token_id, self.config.video_token_id))
        return [mm[:, :-4] for mm in multimodal_embeddings], positions, delta

    def embed_multimodal(self, **kwargs: object):
        if self._tp_config is None:
            return super().embed_multimodal(**kwargs)
        keeps = {"image": pop_keeps(kwargs, "image"), "video": pop_keeps(kwargs, "video")}
        inputs = self._parse_and_validate_multimodal_inputs(**kwargs)
        merge = self.visual.spatial_merge_size
        out: list[torch.Tensor] = []
        for modality, inp in inputs.items():
            image = modality.startswith("image")
            embeds = self._process_image_input(inp) if image else self._process_video_input(inp)
            grids = inp["image_grid_thw" if image else "video_grid_thw"].tolist()
            for i, (e, g) in enumerate(zip(embeds, grids)):
                pos = media_positions(g, merge, 1.0 if image else self._tp_video_scale(inp, i)).to(e.device)
                kind = "image" if image else "video"
                k = keeps[kind]
                e, index = select(e, self._tp_config, keep=None if k is None else k[i], modality=kind,
                                  grid=(g[0], g[1] // merge, g[2] // merge))
                pos = pos[index]
                out.append(torch.cat([e, pos.to(e.dtype)], 1))
        return tuple(out)


@MULTIMODAL_REGISTRY.register_processor(TokenpruneQwen2VLProcessor, info=Qwen2VLProcessingInfo,
                                        dummy_inputs=Qwen2VLDummyInputsBuilder)
class TokenpruneQwen2VL(_PrunedMedia, Qwen2VLForConditionalGeneration):
    """vLLM's Qwen2-VL with image tokens pruned per image before the LLM."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:  # vLLM passes arguments by this signature
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._tp_setup(vllm_config)


@MULTIMODAL_REGISTRY.register_processor(TokenpruneQwen2_5_VLProcessor, info=Qwen2_5_VLProcessingInfo,
                                        dummy_inputs=Qwen2_5_VLDummyInputsBuilder)
class TokenpruneQwen2_5_VL(_PrunedMedia, Qwen2_5_VLForConditionalGeneration):
    """vLLM's Qwen2.5-VL with image tokens pruned per image before the LLM."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._tp_setup(vllm_config)

    def _tp_video_scale(self, video_input, i: int) -> float:
        sec = video_input.get("second_per_grid_ts")
        return float(self.config.vision_config.tokens_per_second) * (float(sec[i]) if sec is not None else 1.0)
