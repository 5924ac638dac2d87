"""The pruning runtime: hooks that prune at prefill and keep masks/positions consistent at every decode step."""
from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import DynamicCache

from ..adapters.base import ADAPTERS, Adapter
from ..config import AUTO, PRE_LLM, PruneConfig
from ..errors import InputError, UnsupportedModelError
from ..scoring.view import TokenView
from .attention import layer_attention
from .auto_layer import entropy_collapse_layer
from .compact import compaction_index, gather_tokens, inverse_index, is_left_padded
from .features import FeatureCapture
from .hooks import HookSet
from .items import MediaItem, find_items
from .stage import StageResult, run_stage
from .state import CallContext, CallState, Segment, StageRecord


#: the instance attribute holding a model's handle
HANDLE_ATTR = "_tokenprune_handle"


@dataclass(frozen=True)
class StageTiming:
    """One stage run at prefill: which stage, where it ran, and how long scoring + selection + reduction took."""

    stage_index: int
    at: str | int
    ms: float


class Runtime(FeatureCapture):
    """Attaches a :class:`PruneConfig` to one model instance through an :class:`Adapter`."""

    def __init__(self, model: torch.nn.Module, adapter: Adapter, config: PruneConfig) -> None:
        self.model, self.adapter, self.config = model, adapter, config
        self.hooks = HookSet()
        self.local = CallContext()  # per-thread, per-call state: one model can serve several threads
        self.last_state: CallState | None = None
        self._layer_stage = {s.layer: i for i, s in enumerate(config.stages) if s.layer is not None}
        self._auto = next((i for i, s in enumerate(config.stages) if s.at == AUTO), None)
        self.auto_layer: int | None = None  # the resolved entropy-collapse layer, once known
        self.stage_callbacks: list[Callable[[StageTiming], None]] = []
        self._captures: set[str] = set().union(*(s.captures() for s in config.stages))
        if "vision_attention" in self._captures and not adapter.supports_cls_attention:
            raise UnsupportedModelError(
                f"Stage.scorer: vision-tower [CLS] attention is not available for model_type "
                f"{model.config.model_type!r}; it is implemented for: "
                f"{', '.join(t for t, a in ADAPTERS.items() if a.supports_cls_attention)}")

    # -- attach / detach ----------------------------------------------------------------------------------
    def attach(self, handle: Any = None) -> None:
        """Installs every hook and patch on this model instance; ``handle`` is kept on the model (so that it lives
        exactly as long as the model: no global registry keeps a dropped model alive)."""
        self.handle = handle if handle is not None else getattr(self, "handle", None)
        a = self.adapter
        self.hooks.pre_hook(a.vlm, self._vlm_pre)
        self.hooks.pre_hook(a.lm, self._lm_pre)
        self.hooks.post_hook(a.lm, self._lm_post)
        for i, layer in enumerate(a.layers):
            self.hooks.pre_hook(layer, functools.partial(self._layer_pre, i))
        for modality, name in a.feature_methods().items():
            self.hooks.patch(a.vlm, name, self._wrap_features(modality, getattr(a.vlm, name)))
        capture = a.vision_capture_module() if "vision_attention" in self._captures else None
        if capture is not None:
            self.hooks.pre_hook(capture, self._capture_vision_block)
        if hasattr(a.vlm, "get_placeholder_mask"):
            self.hooks.patch(a.vlm, "get_placeholder_mask", self._wrap_placeholder(a.vlm.get_placeholder_mask))
        self.hooks.patch(self.model, "generate", self._wrap_generate(self.model.generate))
        self.hooks.patch(self.model, HANDLE_ATTR, self.handle)
        self.hooks.patch(self.model, "__deepcopy__", self._deepcopy)
        self.hooks.patch(self.model, "__reduce_ex__", self._refuse_pickle)
        a.attach_extras(self)

    def _deepcopy(self, memo: dict) -> Any:
        """``copy.deepcopy`` of an attached model: a plain copy (no hooks, no wrappers of this handle)."""
        self.hooks.remove()
        try:
            return copy.deepcopy(self.model, memo)
        finally:
            self.attach()

    @staticmethod
    def _refuse_pickle(protocol: int) -> Any:
        raise InputError("model: pickling (torch.save) a model with a tokenprune handle attached would save its hooks; "
                         "call handle.remove() first, or save model.state_dict() / save_pretrained()")

    def detach(self) -> None:
        self.hooks.remove()
        self.local.state = self.local.pending = self.local.session = None

    def current_compaction(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(dense_idx, valid)`` of the segment the running layer belongs to, ``None`` when uncompacted."""
        seg = self.local.state.current if self.local.state is not None else None
        return (seg.dense_idx, seg.valid) if seg is not None else None

    # -- wrappers -----------------------------------------------------------------------------------------
    @staticmethod
    def _wrap_placeholder(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except ValueError as e:
                raise InputError(f"input_ids: the image/video placeholder tokens do not match the visual features "
                                 f"({e}); each item needs exactly as many placeholder tokens as it has features") from e

        return wrapper

    def _wrap_generate(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def generate(*args: Any, **kwargs: Any) -> Any:
            self._check_generate(kwargs)
            self.local.session = {}
            try:
                return fn(*args, **kwargs)
            finally:
                self.local.session = None

        return generate

    def _check_generate(self, kwargs: dict) -> None:
        """Refuses generate() modes that pruning would make silently wrong."""
        gc = kwargs.get("generation_config")
        for key in ("assistant_model", "prompt_lookup_num_tokens", "assistant_early_exit"):
            if kwargs.get(key) is not None or getattr(gc, key, None) is not None:
                raise InputError(f"{key}: assisted/speculative decoding is not supported while pruning (the first "
                                 f"forward holds draft tokens and rejected drafts crop the pruned cache by dense "
                                 f"lengths); call handle.remove() or use plain decoding")
        cache = kwargs.get("past_key_values")
        st = self.local.state
        if cache is not None and cache.get_seq_length() > 0 and st is not None and st.owns(cache) \
                and st.segments and st.segments[0].via_lm:
            raise InputError("past_key_values: this cache comes from a call pruned before the language model, so "
                             "it is shorter than the conversation and generate() would re-feed part of it; run the "
                             "whole conversation without past_key_values (or prune at an LM layer, whose cache "
                             "continues exactly)")

    # -- hooks --------------------------------------------------------------------------------------------
    def _vlm_pre(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        cache = kwargs.get("past_key_values")
        if cache is None or cache.get_seq_length() == 0:
            ids = kwargs.get("input_ids", args[0] if args else None)
            self.local.pending = {"input_ids": ids, "counts": {}, "vision": {}, "padding": {}, "grids": {}}
            for modality, out in (kwargs.get("mm_encoder_outputs") or {}).items():
                if out is not None:
                    self._add_record(modality, self._record_for(modality, out))
            return None
        st = self.local.state
        if st is not None and st.segments and kwargs.get("position_ids") is None and st.owns(cache):
            emb = kwargs.get("inputs_embeds")
            ref = emb if emb is not None else kwargs.get("input_ids", args[0] if args else None)
            kwargs["position_ids"] = self.adapter.decode_position_ids(
                st.dense_seen, ref.shape[1], kwargs.get("attention_mask"), ref.shape[0], ref.device)
            return args, kwargs
        return None

    def _lm_pre(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self.local.bypass:
            return None
        cache = kwargs.get("past_key_values")
        if cache is None or cache.get_seq_length() == 0:
            pending, self.local.pending = self.local.pending, None
            self.local.state = None
            return self._prefill(pending, args, kwargs, cache)
        st = self.local.state
        if st is None or not st.segments:
            return None
        if not st.owns(cache):
            raise InputError("past_key_values: this cache was not produced under the current tokenprune handle "
                             "(its layers hold pruned sequences); start generation from a fresh cache")
        return self._decode_step(st, args, kwargs)

    def _lm_post(self, module: Any, args: tuple, output: Any) -> None:
        st = self.local.state
        if st is not None and st.phase == "prefill":
            st.bind_cache(getattr(output, "past_key_values", None))  # the LM may have created the cache itself
            st.phase = "decode"
            st.current = None

    def _layer_pre(self, i: int, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        st = self.local.state
        if st is None or self.local.bypass:
            return None
        seg = st.segment_for_layer(i)
        if st.phase == "prefill":
            if seg is not None and not seg.via_lm:
                kwargs.update(seg.prefill_kwargs)  # this segment's positions, rotary tables and mask
            if i in self._layer_stage:  # may open a new segment and substitute its kwargs
                hidden = args[0] if args else kwargs["hidden_states"]
                hidden = self._layer_stage_prefill(st, i, hidden, kwargs)
                args = (hidden,) + tuple(args[1:]) if args else args
                if not args:
                    kwargs["hidden_states"] = hidden
                seg = st.segment_for_layer(i)
        st.current = seg
        if st.phase == "prefill" and (i + 1) in self._layer_stage:
            # FastV scores the stage at K from layer K-1's attention: keep that layer's input (no copy)
            st.previous_layer = (i, args[0] if args else kwargs["hidden_states"], kwargs["position_embeddings"])
        if seg is None or seg.via_lm:
            return args, kwargs
        if st.phase != "prefill":
            hidden = args[0] if args else kwargs["hidden_states"]
            key = (seg.start_layer, self.adapter.layer_type(i))
            if key not in st.step_masks:
                mask2d = torch.cat([seg.valid, st.step_tail], dim=1)
                st.step_masks[key] = self.adapter.make_mask(i, hidden, mask2d, self._cache_of(st))
            kwargs["attention_mask"] = st.step_masks[key]
        return args, kwargs

    # -- prefill ------------------------------------------------------------------------------------------
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
        images = find_items(self.adapter.visual_token_ids(), pending, b, emb.device)
        st = CallState(batch=b, dense_len=n, dense_valid=valid, left_pad=is_left_padded(valid), images=images,
                       dense_seen=n)
        st.bind_cache(cache)
        if self._auto is not None and self.auto_layer is None and any(images):
            self._resolve_auto(kwargs, images)
        self.local.state = self.last_state = st
        first = self.config.stages[0]
        if first.at == PRE_LLM:
            pos = kwargs.get("position_ids")
            if pos is None:
                pos = self.adapter.default_position_ids(b, n, 0, emb.device)
            cos_sin = self.adapter.position_embeddings(emb, pos)
            res = self._run(st, 0, emb, None, cos_sin)
            if res is not None:
                seg = self._compact(st, res, start_layer=0, via_lm=True)
                kwargs["inputs_embeds"] = gather_tokens(res.hidden, seg.idx_local, 1)
                kwargs["position_ids"] = gather_tokens(pos, seg.idx_local, -1)
                kwargs["attention_mask"] = seg.valid.long()
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
        seg.prefill_kwargs = pk
        kwargs.update(pk)
        return new_hidden

    def _run(self, st: CallState, stage_index: int, hidden: torch.Tensor, layer: int | None,
             cos_sin: tuple[torch.Tensor, torch.Tensor]) -> StageResult | None:
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
        res = run_stage(stage, hidden, valid, st.images, layer, gen, attention_fn, frozen)
        if self.stage_callbacks:
            timing = StageTiming(stage_index, layer if stage.at == AUTO else stage.at,
                                 (time.perf_counter() - t0) * 1e3)
            for callback in list(self.stage_callbacks):
                callback(timing)
        if res is not None:
            for row, sels in zip(st.images, res.selections):
                for im, sel in zip(row, sels):
                    im.alive = im.alive[sel]
            if self.local.session is not None:
                self.local.session[stage_index] = res
        st.records.append(StageRecord(
            stage_index=stage_index, at=layer if stage.at == AUTO else stage.at, visual_in=visual_in,
            kept=[sum(im.alive.numel() for im in row) for row in st.images],
            kept_local=[[im.alive.tolist() for im in row] for row in st.images]))
        return res

    def _compact(self, st: CallState, res: StageResult, start_layer: int, via_lm: bool) -> Segment:
        idx, valid = compaction_index(res.keep, st.left_pad)
        prev = st.last
        dense_idx = torch.gather(prev.dense_idx, 1, idx) if prev is not None else idx
        inv = inverse_index(idx, valid, res.keep.shape[1])
        for r, row in enumerate(st.images):
            for im in row:
                im.pos = inv[r, im.pos]
                im.pos = im.pos[im.pos >= 0]
        seg = Segment(start_layer=start_layer, valid=valid, dense_idx=dense_idx, via_lm=via_lm, idx_local=idx)
        st.segments.append(seg)
        return seg

    # -- decode -------------------------------------------------------------------------------------------
    def _decode_step(self, st: CallState, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        emb = kwargs["inputs_embeds"]
        q = emb.shape[1]
        mask = kwargs.get("attention_mask")
        if mask is not None:
            if mask.dim() != 2:
                raise InputError("attention_mask: prepared 4-D masks are not supported while pruning")
            tail = mask[:, st.dense_len:].bool()
        else:
            tail = torch.ones(st.batch, st.dense_seen + q - st.dense_len, dtype=torch.bool, device=emb.device)
        if tail.shape[0] != st.batch:
            raise InputError(f"batch size changed from {st.batch} to {tail.shape[0]} during decoding")
        st.step_tail, st.step_masks = tail, {}
        st.dense_seen += q
        first = st.segments[0]
        if first.via_lm:
            kwargs["attention_mask"] = torch.cat([first.valid, tail], dim=1).long()
        return args, kwargs

    @staticmethod
    def _cache_of(st: CallState) -> Any:
        return st.cache_ref() if st.cache_ref is not None else None

    # -- attention scoring --------------------------------------------------------------------------------
    def _attention(self, layer: int, cos_sin: tuple[torch.Tensor, torch.Tensor], hidden: torch.Tensor,
                   view: TokenView, query: str) -> torch.Tensor:
        cache = self._cache_of(self.local.state) if self.local.state is not None else None
        return layer_attention(self.adapter, cache, layer, cos_sin, hidden, view, query)
