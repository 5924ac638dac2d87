"""Prefill: runs the stages (scoring, selection, reduction), compacts the sequence, places an ``auto`` stage."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import DynamicCache

from ..config import AUTO, PRE_LLM
from ..errors import InputError
from ..scoring.view import TokenView
from .attention import layer_attention
from .auto_layer import entropy_collapse_layer
from .compact import compaction_index, gather_tokens, inverse_index, is_left_padded
from .items import MediaItem, find_items
from .key_bias import add_key_bias, segment_key_bias
from .stage import StageResult, run_stage
from .state import CallState, Segment, StageRecord


@dataclass(frozen=True)
class StageTiming:
    """One stage run at prefill: which stage, where it ran, and how long scoring + selection + reduction took."""

    stage_index: int
    at: str | int
    ms: float


class Prefill:
    """Mixin of :class:`~tokenprune.runtime.engine.Runtime`: what happens in the prefill forward."""

    adapter: Any
    config: Any
    local: Any
    last_state: CallState | None
    auto_layer: int | None
    stage_callbacks: list[Callable[[StageTiming], None]]
    _auto: int | None
    _layer_stage: dict[int, int]

    def _prefill(self, pending: dict | None, args: tuple, kwargs: dict, cache: Any) -> tuple[tuple, dict] | None:
        emb = kwargs.get("inputs_embeds")
        if pending is None or emb is None:
            return None
        mask = kwargs.get("attention_mask")
        if isinstance(mask, dict) or (isinstance(mask, torch.Tensor) and mask.dim() != 2):
            raise InputError("attention_mask: tokenprune needs the 2-D padding mask; prepared 4-D masks (static or "
                             "compiled caches) are not supported, use the default DynamicCache")
        b, n = emb.shape[:2]
        use_cache = kwargs.get("use_cache")
        if cache is None and (use_cache if use_cache is not None else getattr(self.adapter.text_config, "use_cache",
                                                                                False)):
            # the LM would create this cache itself; creating it here lets the stages read its keys during prefill
            cache = kwargs["past_key_values"] = DynamicCache(config=self.adapter.text_config)
        valid = mask.bool() if mask is not None else torch.ones(b, n, dtype=torch.bool, device=emb.device)
        unpadded = mask is None or bool(valid.all())
        images = find_items(self.adapter.visual_token_ids(), pending, b, emb.device)
        st = CallState(batch=b, dense_len=n, dense_valid=valid, left_pad=unpadded or is_left_padded(valid),
                       unpadded=unpadded, images=images, dense_seen=n)
        st.bind_cache(cache)
        if self._auto is not None and self.auto_layer is None and any(images):
            self._resolve_auto(kwargs, images)
        self.local.state = self.last_state = st
        first = self.config.stages[0]
        if first.at == PRE_LLM:
            pos = kwargs.get("position_ids")
            if pos is None:
                pos = self.adapter.default_position_ids(b, n, 0, emb.device)
            # rotary tables only when a scorer reads layer-0 attention (computed on first use)
            cos_sin = functools.cache(functools.partial(self.adapter.position_embeddings, emb, pos))
            res = self._run(st, 0, emb, None, cos_sin)
            if res is not None:
                seg = self._compact(st, res, start_layer=0, via_lm=True)
                kwargs["inputs_embeds"] = gather_tokens(res.hidden, seg.idx_local, 1)
                kwargs["position_ids"] = gather_tokens(pos, seg.idx_local, -1)
                # always a mask, never None: without one, transformers reads pruned (jumping) position ids as
                # packed sequences and masks across them. No padding before or after: the dense mask's first L
                # columns (all ones) are that mask, a view.
                kwargs["attention_mask"] = (mask[:, :seg.valid.shape[1]] if seg.unpadded and mask is not None
                                            else seg.valid.long())
                st.current = seg  # every layer runs in this segment (read by e.g. Qwen3-VL's deepstack patch)
        return args, kwargs

    def _resolve_auto(self, kwargs: dict, images: list[list[MediaItem]]) -> None:
        """Places the ``auto`` stage at the Entropy Collapse Layer (once per handle)."""
        self.local.bypass = True
        try:
            self.auto_layer, _ = entropy_collapse_layer(self.adapter.lm, self.adapter.num_layers, kwargs, images)
        finally:
            self.local.bypass = False
        self._layer_stage[self.auto_layer] = self._auto

    def _layer_stage_prefill(self, st: CallState, i: int, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        cos_sin = kwargs["position_embeddings"]
        res = self._run(st, self._layer_stage[i], hidden, i, cos_sin)
        if res is None:
            return hidden
        seg = self._compact(st, res, start_layer=i, via_lm=False)
        idx = seg.idx_local
        new_hidden = gather_tokens(res.hidden, idx, 1)
        pk = {"position_embeddings": tuple(gather_tokens(t, idx, -2) for t in cos_sin)}
        if kwargs.get("position_ids") is not None:
            pk["position_ids"] = gather_tokens(kwargs["position_ids"], idx, -1)
        pk["attention_mask"] = self.adapter.make_mask(i, new_hidden, seg.valid, self._cache_of(st))
        if seg.key_bias is not None:
            pk["attention_mask"] = add_key_bias(pk["attention_mask"], seg.key_bias, new_hidden, 0)
        seg.prefill_kwargs = pk
        kwargs.update(pk)
        return new_hidden

    def _run(self, st: CallState, stage_index: int, hidden: torch.Tensor, layer: int | None,
             cos_sin: tuple[torch.Tensor, torch.Tensor] | Callable[[], tuple]) -> StageResult | None:
        stage = self.config.stages[stage_index]
        valid = st.current_valid()
        n_images = [len(r) for r in st.images]
        frozen = None
        if self.local.session is not None and stage_index in self.local.session:
            cand = self.local.session[stage_index]
            if [len(r) for r in cand.selections] == n_images:
                frozen = cand
        gen = torch.Generator().manual_seed(self.config.seed * 1000 + stage_index)
        prev = st.previous_layer if layer is not None else None
        if prev is not None and prev[0] == layer - 1:
            attention_fn = functools.partial(self._attention, prev[0], prev[2], prev[1])
        else:  # pre_llm (or a stage at layer 0): layer 0's q/k on the stage's input
            attention_fn = functools.partial(self._attention, layer or 0, cos_sin, hidden)
        visual_in = [sum(im.alive.numel() for im in row) for row in st.images]
        t0 = time.perf_counter()
        # before the LM the embeddings are the VLM's fresh tensor, read afterwards only through the result: merged
        # rows can be written into it (saves a copy of the whole sequence) — unless autograd may need it; a
        # layer's input may be kept elsewhere (output_hidden_states)
        inplace = layer is None and not (torch.is_grad_enabled() and hidden.requires_grad)
        res = run_stage(stage, hidden, valid, st.images, layer, gen, attention_fn, frozen, inplace=inplace)
        if self.stage_callbacks:
            timing = StageTiming(stage_index, layer if stage.at == AUTO else stage.at,
                                 (time.perf_counter() - t0) * 1e3)
            for callback in list(self.stage_callbacks):
                callback(timing)
        if res is not None:
            for r, (row, sels) in enumerate(zip(st.images, res.selections)):
                for j, (im, sel) in enumerate(zip(row, sels)):
                    im.alive = im.alive.index_select(0, sel)
                    if res.counts is not None:
                        im.counts = res.counts[r][j]
                    elif im.counts is not None:
                        im.counts = im.counts[sel]
            if self.local.session is not None:
                self.local.session[stage_index] = res
        st.records.append(StageRecord(
            stage_index=stage_index, at=layer if stage.at == AUTO else stage.at, visual_in=visual_in,
            kept=[sum(im.alive.numel() for im in row) for row in st.images],
            kept_local=[[im.alive for im in row] for row in st.images]))  # tensors: no device sync per call
        return res

    def _compact(self, st: CallState, res: StageResult, start_layer: int, via_lm: bool) -> Segment:
        idx, valid = compaction_index(res.keep, st.left_pad)
        prev = st.last
        dense_idx = torch.gather(prev.dense_idx, 1, idx) if prev is not None else idx
        inv = inverse_index(idx, valid, res.keep.shape[1])
        for r, (row, sels) in enumerate(zip(st.images, res.selections)):
            for im, sel in zip(row, sels):
                # the item's surviving tokens are its positions at the selected indices (both ascending)
                im.pos = inv[r].index_select(0, im.pos.index_select(0, sel))
        seg = Segment(start_layer=start_layer, valid=valid, dense_idx=dense_idx, via_lm=via_lm, idx_local=idx,
                      key_bias=segment_key_bias(st.images, valid),
                      unpadded=st.unpadded and (valid.shape[0] == 1 or bool(valid.all())))
        st.segments.append(seg)
        return seg


    @staticmethod
    def _cache_of(st: CallState) -> Any:
        return st.cache_ref() if st.cache_ref is not None else None

    def _attention(self, layer: int, cos_sin: tuple[torch.Tensor, torch.Tensor], hidden: torch.Tensor,
                   view: TokenView, query: str, keys: str = "all") -> torch.Tensor:
        cache = self._cache_of(self.local.state) if self.local.state is not None else None
        cos_sin = cos_sin() if callable(cos_sin) else cos_sin
        return layer_attention(self.adapter, cache, layer, cos_sin, hidden, view, query, keys)

