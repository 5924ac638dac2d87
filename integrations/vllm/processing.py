"""The processor side of the plugin, shared by the families: per-item kept-token counts (the server's budget or the
request's, ``budgets.py``) computed once from the HF processor's output and carried as a per-item field (one per
modality) that the placeholders and the model both read."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from vllm.multimodal.inputs import MultiModalFieldConfig

from .budgets import FIELDS, request_config, strip
from .common import config_from_env, num_kept


class BudgetedProcessor:
    """Mixin for a vLLM multimodal processor (before the family's processor in the bases). Subclasses give
    ``_tp_media_tokens``: each item's token count before pruning, per modality, from the HF processor's output."""

    def _tp_media_tokens(self, processed: Mapping[str, object],
                         hf_kwargs: Mapping[str, object]) -> dict[str, list[int]]:
        raise NotImplementedError

    def _call_hf_processor(self, hf_data, hf_kwargs):
        out = super()._call_hf_processor(hf_data, strip(hf_kwargs))
        cfg = config_from_env()
        if cfg is None:
            return out
        req = request_config(cfg, hf_kwargs)
        field = "keep" if req is cfg else "mm_processor_kwargs.tokenprune.keep"
        for modality, counts in self._tp_media_tokens(out, strip(hf_kwargs)).items():
            if counts:
                out[FIELDS[modality]] = torch.tensor([num_kept(n, req, field) for n in counts], dtype=torch.long)
        return out

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs):
        fields = dict(super()._get_mm_fields_config(hf_inputs, strip(hf_processor_mm_kwargs)))
        for modality, name in FIELDS.items():
            if name in hf_inputs:
                fields[name] = MultiModalFieldConfig.batched(modality)
        return fields

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        return super()._get_prompt_updates(mm_items, strip(hf_processor_mm_kwargs), out_mm_kwargs)

    @staticmethod
    def _tp_item_keep(out_mm_kwargs, item_idx: int, dense_tokens: int, modality: str = "image") -> int:
        """Placeholders of item ``item_idx``: its counted field, or the server's budget when the processor did not
        run on it (embeddings passed directly)."""
        item = out_mm_kwargs[modality][item_idx]
        if FIELDS[modality] in item:
            return int(item[FIELDS[modality]].data)
        cfg = config_from_env()
        return num_kept(dense_tokens, cfg) if cfg is not None else dense_tokens


def pop_keeps(kwargs: dict, modality: str = "image") -> list[int] | None:
    """The per-item counts the processor set for ``modality`` (removed from the model's keyword arguments)."""
    raw = kwargs.pop(FIELDS[modality], None)
    if raw is None:
        return None
    if isinstance(raw, torch.Tensor):
        return [int(x) for x in raw.reshape(-1)]
    return [int(torch.as_tensor(x).reshape(-1)[0]) for x in raw]
