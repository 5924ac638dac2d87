"""Qwen2-VL: ViT with 2x2 patch merging, Qwen2 LM with M-RoPE (t, h, w) positions and ``rope_deltas``."""
from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn as nn

from ..scoring.vflow import global_query_attention, patch_entropy
from .base import Adapter, register


@register
class Qwen2VLAdapter(Adapter):
    model_types = ("qwen2_vl",)
    hf_class = "Qwen2VLForConditionalGeneration"
    mrope = 3
    supports_cls_attention = True
    supports_vision_flow = True
    supports_vision_global = True
    modalities = ("image", "video")
    vllm_models = {"Qwen2VLForConditionalGeneration": "tokenprune.integrations.vllm.qwen_vl:TokenpruneQwen2VL"}
    stock_heads = False

    @staticmethod
    def tiny_vision(hidden: int) -> dict[str, Any]:
        return dict(depth=2, hidden_size=hidden, num_heads=2, patch_size=14, spatial_merge_size=2,
                    temporal_patch_size=2, in_channels=3, embed_dim=32, mlp_ratio=2)

    @staticmethod
    def tiny_rope(text: dict[str, Any]) -> dict[str, Any]:
        hd = text["hidden_size"] // text["num_attention_heads"]
        section = [hd // 2 - 2 * (hd // 8), hd // 8, hd // 8]  # must sum to head_dim / 2
        return {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}

    @classmethod
    def tiny_config(cls, text: dict[str, Any], ids: dict[str, int]) -> Any:
        import transformers as tf

        config_cls = getattr(tf, cls.hf_class.replace("ForConditionalGeneration", "Config"))
        return config_cls(vision_config=cls.tiny_vision(text["hidden_size"]),
                          text_config=dict(text, rope_parameters=cls.tiny_rope(text)), image_token_id=ids["image"],
                          video_token_id=ids["video"], vision_start_token_id=ids["vstart"],
                          vision_end_token_id=ids["vend"])

    def vision_capture_module(self) -> nn.Module | None:
        return self.vlm.visual.blocks[-1]

    def cls_attention(self, image_outputs: object, grid_thw: torch.Tensor | None = None,
                      block_input: tuple[torch.Tensor, dict[str, Any]] | None = None,
                      projections: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor] | None:
        """No [CLS] token: the attention each patch *receives* in the tower's last block (mean over heads and over
        the queries of its attention window), averaged over each 2x2 merge unit and put back in raster order
        (Qwen2.5-VL runs its blocks in window order)."""
        if block_input is None or grid_thw is None:
            return None
        hidden, kw = block_input
        blk = self.vlm.visual.blocks[-1]
        q, k, _ = self._qkv(blk, hidden, kw)
        return self._segment_attention(q, k, kw["cu_seqlens"], blk.attn.scaling, grid_thw, lambda p: p.mean(0))

    def _segment_attention(self, q: torch.Tensor, k: torch.Tensor, cu_seqlens: torch.Tensor, scaling: float,
                           grid_thw: torch.Tensor, reduce: Any) -> list[torch.Tensor]:
        """Per attention segment of the block (a frame, or a window), the head-averaged attention ``[m, m]``
        reduced to one value per patch by ``reduce``; then per merge unit, raster order, split per item."""
        cu = cu_seqlens.tolist()
        out = torch.empty(q.shape[0], dtype=torch.float32, device=q.device)
        for a, b in zip(cu[:-1], cu[1:]):
            qs, ks = q[a:b].transpose(0, 1).float(), k[a:b].transpose(0, 1).float()  # [H, m, d]
            out[a:b] = reduce((qs @ ks.transpose(-1, -2) * scaling).softmax(-1).mean(0))
        return list(torch.split(self._per_unit(out, grid_thw), self._unit_counts(grid_thw), dim=-1))

    def vision_global(self, image_outputs: object, grid_thw: torch.Tensor | None, block_input: Any,
                      threshold: float, projections: dict[str, torch.Tensor] | None = None
                      ) -> list[torch.Tensor] | None:
        """VFlowOpt's global-query attention in the tower's last block, per attention segment (a frame)."""
        if block_input is None or grid_thw is None:
            return None
        hidden, kw = block_input
        blk = self.vlm.visual.blocks[-1]
        q, k, _ = self._qkv(blk, hidden, kw)
        return self._segment_attention(q, k, kw["cu_seqlens"], blk.attn.scaling, grid_thw,
                                       lambda p: global_query_attention(p, threshold))

    def patch_entropies(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor | None) -> list[torch.Tensor] | None:
        """Flattened patches ``[N, C·T·P·P]`` (merge units contiguous, raster order): grey levels min-max scaled per
        item, entropy per patch, mean per merge unit."""
        if grid_thw is None or pixel_values.dim() != 2:
            return None
        c = self.vlm.visual.config.in_channels if hasattr(self.vlm.visual.config, "in_channels") else 3
        grey = pixel_values.float().reshape(pixel_values.shape[0], c, -1).mean(1)  # [N, T·P·P]
        unit = self.vlm.visual.spatial_merge_size ** 2
        out = []
        for g in torch.split(grey, grid_thw.prod(-1).tolist()):
            g = (g - g.min()) / (g.max() - g.min()).clamp(min=1e-12)
            out.append(patch_entropy(g).view(-1, unit).mean(1))
        return out

    def _unit_counts(self, grid_thw: torch.Tensor) -> list[int]:
        return (grid_thw.prod(-1) // self.vlm.visual.spatial_merge_size ** 2).tolist()

    def _per_unit(self, per_patch: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """``[..., patches]`` in the tower's order -> ``[..., units]``: mean over each 2x2 merge unit, raster order
        (Qwen2.5-VL runs its blocks in window order)."""
        unit = self.vlm.visual.spatial_merge_size ** 2
        per_unit = per_patch.reshape(*per_patch.shape[:-1], -1, unit).mean(-1)
        if hasattr(self.vlm.visual, "window_size"):  # Qwen2.5-VL: window order -> raster order
            from transformers.vision_utils import get_vision_window_index

            v = self.vlm.visual
            window_index, _ = get_vision_window_index(grid_thw, spatial_merge_size=v.spatial_merge_size,
                                                      window_size=v.window_size, patch_size=v.patch_size)
            per_unit = per_unit[..., torch.argsort(window_index.to(per_unit.device))]
        return per_unit

    def _qkv(self, blk: nn.Module, hidden: torch.Tensor, kw: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """``[N, H, d]`` queries and keys (rotary applied) and values of block ``blk`` on its input ``hidden``."""
        attn = blk.attn
        n = hidden.shape[0]
        q, k, v = attn.qkv(blk.norm1(hidden)).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        cos, sin = kw["position_embeddings"]
        q, k = sys.modules[type(attn).__module__].apply_rotary_pos_emb_vision(q, k, cos, sin)
        return q, k, v

    def flow_modules(self) -> list[nn.Module]:
        return list(self.vlm.visual.blocks[:-1])

    def flow_block(self, index: int, block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any],
                   grid_thw: torch.Tensor | None) -> Any:
        """FlowCut's Qwen variant (no [CLS]): per item, the attention of the item's global query (its patches' mean
        query, per head) over its patches, mean over heads; and each patch's head-averaged value L1 norm."""
        if grid_thw is None:
            return None
        q, k, v = (x.float() for x in self._qkv(block, hidden, kwargs))
        rel = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        off = 0
        for size in grid_thw.prod(-1).tolist():
            qs, ks = q[off:off + size].transpose(0, 1), k[off:off + size].transpose(0, 1)  # [H, m, d]
            gq = qs.mean(1, keepdim=True)
            rel[off:off + size] = (gq @ ks.transpose(-1, -2) * block.attn.scaling).softmax(-1).mean(0)[0]
            off += size
        return rel, v.mean(1).abs().sum(-1)

    def vision_flow(self, image_outputs: object, grid_thw: torch.Tensor | None,
                    blocks: list[Any] | None) -> list[dict[str, torch.Tensor]] | None:
        if grid_thw is None or not blocks or any(b is None for b in blocks):
            return None
        rel = self._per_unit(torch.stack([b[0] for b in blocks]), grid_thw)  # [L, units]
        vnorm = self._per_unit(torch.stack([b[1] for b in blocks]), grid_thw)
        sizes = self._unit_counts(grid_thw)
        return [{"rel": r, "vnorm": m} for r, m in zip(torch.split(rel, sizes, -1), torch.split(vnorm, sizes, -1))]

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
