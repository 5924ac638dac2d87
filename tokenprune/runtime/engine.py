"""The pruning runtime: hooks that prune at prefill and keep masks/positions consistent at every decode step."""
from __future__ import annotations

import copy
import functools
from typing import Any, Callable

import torch

from ..adapters.base import ADAPTERS, Adapter
from ..config import AUTO, PruneConfig
from ..errors import ConfigError, InputError, UnsupportedModelError
from ..registry import SCORERS
from .decode import Decode
from .features import FeatureCapture
from .hooks import HookSet
from .key_bias import add_key_bias
from .prefill import Prefill, StageTiming
from .state import CallContext, CallState


#: the instance attribute holding a model's handle
HANDLE_ATTR = "_tokenprune_handle"


class Runtime(FeatureCapture, Prefill, Decode):
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
        self._proportional = any(s.proportional for s in config.stages)
        impl = getattr(model.config, "_attn_implementation", None) or ""
        if self._proportional and impl.startswith("flash"):
            raise UnsupportedModelError(f"Stage.proportional: proportional attention adds a bias to the attention "
                                        f"logits, which attn_implementation {impl!r} cannot take; load the model "
                                        f"with 'sdpa' or 'eager'")
        if "vision_attention" in self._captures and not adapter.supports_cls_attention:
            raise UnsupportedModelError(
                f"Stage.scorer: vision-tower [CLS] attention is not available for model_type "
                f"{model.config.model_type!r}; it is implemented for: "
                f"{', '.join(t for t, a in ADAPTERS.items() if a.supports_cls_attention)}")
        self.vflow_threshold = self._capture_option(config, "vflow", "threshold")
        self.zoo_options = (self._capture_option(config, "zoo", "directions"),
                            self._capture_option(config, "zoo", "eps"), config.seed)
        if "projector_sensitivity" in self._captures and not adapter.supports_projector_sensitivity:
            raise UnsupportedModelError(
                f"Stage.scorer: projector sensitivity (zoo) is not available for model_type "
                f"{model.config.model_type!r}; it is implemented for: "
                f"{', '.join(t for t, a in ADAPTERS.items() if a.supports_projector_sensitivity)}")
        if "vision_global" in self._captures and not adapter.supports_vision_global:
            raise UnsupportedModelError(
                f"Stage.scorer: vision-tower global-query attention (vflow) is not available for model_type "
                f"{model.config.model_type!r}; it is implemented for: "
                f"{', '.join(t for t, a in ADAPTERS.items() if a.supports_vision_global)}")
        if "vision_flow" in self._captures and not adapter.supports_vision_flow:
            raise UnsupportedModelError(
                f"Stage.scorer: vision-tower information flow (flowcut) is not available for model_type "
                f"{model.config.model_type!r}; it is implemented for: "
                f"{', '.join(t for t, a in ADAPTERS.items() if a.supports_vision_flow)}")

    @staticmethod
    def _capture_option(config: PruneConfig, scorer: str, name: str) -> Any:
        """An option a scorer's capture is computed with (once per image, before the stages): one value per config
        (the scorer's default when no stage uses it)."""
        default = SCORERS.get(scorer).defaults()[name]
        values = {s.scorer_kwargs.get(name, default) for s in config.stages if s.scorer == scorer}
        if len(values) > 1:
            raise ConfigError(f"Stage.{name}: the {scorer} stages of one config share one capture; got "
                              f"{sorted(values)}")
        return values.pop() if values else default

    # -- attach / detach ----------------------------------------------------------------------------------
    def attach(self, handle: Any = None) -> None:
        """Installs every hook and patch on this model instance; ``handle`` is kept on the model (so that it lives
        exactly as long as the model: no global registry keeps a dropped model alive)."""
        self.handle = handle if handle is not None else getattr(self, "handle", None)
        a = self.adapter
        self.hooks.pre_hook(a.vlm, self._vlm_pre)
        self.hooks.pre_hook(a.lm, self._lm_pre)
        self.hooks.post_hook(a.lm, self._lm_post)
        if self._layer_stage or self._auto is not None or self._proportional:
            # only stages inside the LM need per-layer work (masks, positions, scoring inputs); a pre_llm-only
            # config hands the LM a shorter sequence and leaves its layers unhooked (no per-layer hook cost)
            for i, layer in enumerate(a.layers):
                self.hooks.pre_hook(layer, functools.partial(self._layer_pre, i))
        for modality, name in a.feature_methods().items():
            self.hooks.patch(a.vlm, name, self._wrap_features(modality, getattr(a.vlm, name)))
        if self._captures & {"vision_attention", "vision_global"}:
            capture = a.vision_capture_module()
            if capture is not None:
                self.hooks.pre_hook(capture, self._capture_vision_block)
            for name, module in a.vision_projection_modules().items():
                self.hooks.post_hook(module, functools.partial(self._capture_projection, name))
        if "vision_flow" in self._captures:
            for i, block in enumerate(a.flow_modules()):
                self.hooks.pre_hook(block, functools.partial(self._capture_flow_block, i))
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
            self.local.pending = {"input_ids": ids, "counts": {}, "vision": {}, "padding": {}, "grids": {},
                                  "flow": {}}
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
        if seg is None or (seg.via_lm and seg.key_bias is None):
            return args, kwargs
        hidden = args[0] if args else kwargs["hidden_states"]
        key = (seg.start_layer, self.adapter.layer_type(i))
        cache = self._cache_of(st)
        past = cache.get_seq_length(i) if cache is not None and st.phase != "prefill" else 0
        if seg.via_lm:  # a pre_llm proportional merge: the LM's own mask for this layer, plus the key bias
            masks = seg.bias_masks if st.phase == "prefill" else st.step_masks
            if key not in masks:
                masks[key] = add_key_bias(kwargs.get("attention_mask"), seg.key_bias, hidden, past)
            kwargs["attention_mask"] = masks[key]
        elif st.phase != "prefill":
            if key not in st.step_masks:
                mask2d = torch.cat([seg.valid, st.step_tail], dim=1)
                mask = self.adapter.make_mask(i, hidden, mask2d, cache)
                st.step_masks[key] = (add_key_bias(mask, seg.key_bias, hidden, past) if seg.key_bias is not None
                                      else mask)
            kwargs["attention_mask"] = st.step_masks[key]
        return args, kwargs
