"""Qwen2-VL: ViT with 2x2 patch merging, Qwen2 LM with M-RoPE (t, h, w) positions and ``rope_deltas``."""
from __future__ import annotations

import torch

from .base import Adapter, register


@register
class Qwen2VLAdapter(Adapter):
    model_types = ("qwen2_vl",)
    mrope = 3

    def decode_position_ids(self, dense_seen: int, q_len: int, attention_mask: torch.Tensor | None,
                            batch: int, device: torch.device) -> torch.Tensor:
        # mirrors Qwen*VLModel.compute_3d_position_ids, with the dense (unpruned) cache length
        deltas = getattr(self.vlm, "rope_deltas", None)
        if deltas is None:
            return self.default_position_ids(batch, q_len, dense_seen, device)
        if attention_mask is not None:
            pos = attention_mask.long().cumsum(-1) - 1
            pos = pos.masked_fill(attention_mask == 0, 0)[:, -q_len:]
        else:
            pos = torch.arange(dense_seen, dense_seen + q_len, device=device).expand(batch, -1)
        pos = pos.unsqueeze(0).expand(3, -1, -1)
        return pos + deltas.repeat_interleave(batch // deltas.shape[0], dim=0).to(device)
