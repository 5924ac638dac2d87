"""The adapter interface: the only place that knows a model family's internals."""
from __future__ import annotations

import sys
from typing import Any, ClassVar

import torch
import torch.nn as nn
from transformers import masking_utils

from ..errors import RegistrationError, UnsupportedModelError
from ..runtime.compact import take_rows

ADAPTERS: dict[str, type["Adapter"]] = {}


def register(cls: type["Adapter"]) -> type["Adapter"]:
    """Class decorator: registers ``cls`` for each ``config.model_type`` in ``cls.model_types``; a model type that
    already has an adapter raises (a second adapter would silently replace the first)."""
    for t in cls.model_types:
        if t in ADAPTERS:
            raise RegistrationError(f"model_type {t!r} already has an adapter ({ADAPTERS[t].__name__}); "
                             f"{cls.__name__} cannot replace it")
        if not cls.hf_class:
            raise RegistrationError(f"{cls.__name__}: declare hf_class (the transformers *ForConditionalGeneration class)")
        ADAPTERS[t] = cls
    return cls


def family(model_type: str | None) -> type["Adapter"]:
    """The family-table entry (adapter class) of ``model_type``, or :class:`UnsupportedModelError`."""
    if model_type not in ADAPTERS:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[model_type]


def get_adapter(model: nn.Module) -> "Adapter":
    """The adapter for ``model`` (a ``*ForConditionalGeneration``), or :class:`UnsupportedModelError`."""
    return family(getattr(getattr(model, "config", None), "model_type", None))(model)


class Adapter:
    """Default behaviour for HF VLMs whose ``model.model.language_model`` is a decoder with ``layers``.

    Each subclass is one row of the family table: it declares everything family-specific once (the class
    attributes below, plus :meth:`tiny_config` for tests) and overrides what differs. Every consumer (runtime,
    weight pruning, vLLM plugin, test models, ``tokenprune info``) reads it from :data:`ADAPTERS`.
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    #: the transformers class (``getattr(transformers, hf_class)``)
    hf_class: ClassVar[str] = ""
    #: rows of M-RoPE position ids (0 = plain 1-D positions ``[B, n]``)
    mrope: ClassVar[int] = 0
    #: whether :meth:`cls_attention` is implemented (vision-tower [CLS] attention scorers)
    supports_cls_attention: ClassVar[bool] = False
    #: the adapter implements :meth:`vision_flow` (the ``flowcut`` scorer)
    supports_vision_flow: ClassVar[bool] = False
    #: the adapter implements :meth:`vision_global` and :meth:`patch_entropies` (the ``vflow`` scorer)
    supports_vision_global: ClassVar[bool] = False
    #: the adapter implements :meth:`projector_sensitivity` (the ``zoo`` scorer)
    supports_projector_sensitivity: ClassVar[bool] = False
    #: modalities the family's processor and model take
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    #: vLLM architecture name -> ``module:Class`` of the plugin's model for it (empty: not served by the plugin)
    vllm_models: ClassVar[dict[str, str]] = {}
    #: vLLM architecture -> why the plugin cannot prune it (the engine refuses to start with the plugin on)
    vllm_refused: ClassVar[dict[str, str]] = {}
    #: weight pruning: whether a stock config can express pruned query heads (an explicit ``head_dim`` the family's
    #: attention honours; Qwen2-VL/2.5-VL derive head_dim from hidden_size / num_heads and assert it)
    stock_heads: ClassVar[bool] = True

    @classmethod
    def position_scheme(cls) -> str:
        return "mrope" if cls.mrope else "1d"

    @staticmethod
    def tiny_config(text: dict[str, Any], ids: dict[str, int]) -> Any:
        """A tiny random-weight config of this family (``tokenprune.testing``): ``text`` holds the text-config
        keyword arguments, ``ids`` the placeholder ids (``image``, ``video``, ``vstart``, ``vend``, ``pad``)."""
        raise NotImplementedError

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.vlm = getattr(model, "model", None)
        self.lm = getattr(self.vlm, "language_model", None)
        if self.lm is None or not isinstance(getattr(self.lm, "layers", None), nn.ModuleList):
            raise UnsupportedModelError(
                f"{type(model).__name__}: expected a *ForConditionalGeneration with .model.language_model.layers")
        self.layers: nn.ModuleList = self.lm.layers
        self.text_config = self.lm.config

    # -- where visual tokens are --------------------------------------------------------------------------
    def visual_token_ids(self) -> dict[str, int]:
        """Modality -> placeholder token id, in the order the model scatters features."""
        cfg = self.model.config
        ids = {"image": getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)}
        vid = getattr(cfg, "video_token_id", None) or getattr(cfg, "video_token_index", None)
        if vid is not None:
            ids["video"] = vid
        return {k: int(v) for k, v in ids.items() if v is not None}

    def feature_methods(self) -> dict[str, str]:
        """Modality -> name of the inner-model method that returns per-item features (``pooler_output``)."""
        return {m: f"get_{m}_features" for m in self.visual_token_ids() if hasattr(self.vlm, f"get_{m}_features")}

    @staticmethod
    def feature_counts(output: Any) -> list[int]:
        """Visual tokens per item in the output of a ``get_*_features`` call."""
        feats = getattr(output, "pooler_output", output)
        if isinstance(feats, torch.Tensor):
            return [feats.shape[-2]] * feats.shape[0] if feats.dim() == 3 else [feats.shape[0]]
        return [int(f.shape[-2]) if f.dim() == 3 else int(f.shape[0]) for f in feats]

    def item_grids(self, counts: list[int], grid_thw: torch.Tensor | None, modality: str = "image",
                   pixels: torch.Tensor | None = None) -> list[tuple[int, int, int] | None]:
        """Per item, its token grid ``(t, h, w)`` (frames × rows × columns after any patch merging), or ``None``
        where the tokens are not a plain grid (anyres crops with newline tokens, a kept [CLS] token)."""
        merge = getattr(getattr(self.vlm, "visual", None), "spatial_merge_size", 1)
        out: list[tuple[int, int, int] | None] = []
        for i, n in enumerate(counts):
            g = None
            if self.mrope and grid_thw is not None and i < len(grid_thw):
                t, h, w = (int(x) for x in grid_thw[i])
                g = (t, h // merge, w // merge)
            elif int(n ** 0.5) ** 2 == n:
                g = (1, int(n ** 0.5), int(n ** 0.5))
            out.append(g if g is not None and g[0] * g[1] * g[2] == n else None)
        return out

    # -- positions ----------------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def default_position_ids(self, batch: int, length: int, start: int, device: torch.device) -> torch.Tensor:
        """What the LM uses when ``position_ids`` is None: ``start + arange(length)``."""
        pos = torch.arange(start, start + length, device=device).expand(batch, -1)
        return pos.unsqueeze(0).expand(self.mrope, -1, -1) if self.mrope else pos

    def rope_positions(self, position_ids: torch.Tensor) -> torch.Tensor:
        """The position ids the LM's rotary embedding receives (M-RoPE: drops a leading text row)."""
        if self.mrope:
            if position_ids.dim() == 2:
                return position_ids.unsqueeze(0).expand(self.mrope, -1, -1)
            return position_ids[-self.mrope:]
        return position_ids

    def position_embeddings(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lm.rotary_emb(hidden, self.rope_positions(position_ids))

    def decode_position_ids(self, dense_seen: int, q_len: int, attention_mask: torch.Tensor | None,
                            batch: int, device: torch.device) -> torch.Tensor:
        """Position ids the *unpruned* model would compute for a decode step given no ``position_ids``."""
        return self.default_position_ids(batch, q_len, dense_seen, device)

    # -- attention at a layer -----------------------------------------------------------------------------
    def query_key(self, layer_idx: int, hidden: torch.Tensor, q_index: torch.Tensor, cos: torch.Tensor,
                  sin: torch.Tensor, keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated, scaled queries ``[B, H, Q, hd]`` at ``q_index [B, Q]`` and keys ``[B, H, n, hd]`` (GQA-expanded)
        of layer ``layer_idx`` for the hidden states entering it, exactly as the layer's attention computes them.
        ``keys``: the layer's cached (rotated) keys ``[B, H_kv, n, hd]``, reused instead of recomputed."""
        layer = self.layers[layer_idx]
        attn = layer.self_attn
        b, n, _ = hidden.shape
        hd = attn.head_dim
        xq = layer.input_layernorm(take_rows(hidden, q_index))
        q = attn.q_proj(xq).view(b, q_index.shape[1], -1, hd)
        if hasattr(attn, "q_norm"):
            q = attn.q_norm(q)
        q = q.transpose(1, 2)
        rotate = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        cq, sq = take_rows(cos, q_index), take_rows(sin, q_index)
        cos, sin = cos.expand(b, -1, -1), sin.expand(b, -1, -1)
        q = rotate(q, q, cq, sq)[0]
        if keys is None:
            k = attn.k_proj(layer.input_layernorm(hidden)).view(b, n, -1, hd)
            if hasattr(attn, "k_norm"):
                k = attn.k_norm(k)
            keys = rotate(k.transpose(1, 2), k.transpose(1, 2), cos, sin)[0]
        keys = keys.repeat_interleave(q.shape[1] // keys.shape[1], dim=1)
        return q * attn.scaling, keys

    # -- masks --------------------------------------------------------------------------------------------
    def layer_type(self, layer_idx: int) -> str:
        types = getattr(self.text_config, "layer_types", None)
        return types[layer_idx] if types else "full_attention"

    def make_mask(self, layer_idx: int, hidden: torch.Tensor, mask2d: torch.Tensor, cache: Any) -> Any:
        """The attention mask layer ``layer_idx`` needs for a 2-D padding mask of its own (compacted) keys."""
        fn = (masking_utils.create_sliding_window_causal_mask if self.layer_type(layer_idx) == "sliding_attention"
              else masking_utils.create_causal_mask)
        return fn(config=self.text_config, inputs_embeds=hidden, attention_mask=mask2d,
                  past_key_values=cache, position_ids=None, layer_idx=layer_idx)

    # -- vision tower ---------------------------------------------------------------------------------------
    def cls_attention(self, image_outputs: object, grid_thw: torch.Tensor | None = None,
                      block_input: tuple[torch.Tensor, dict[str, Any]] | None = None,
                      projections: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor] | None:
        """Per item, the vision tower's attention score of each visual token (the [CLS] row, or attention received
        where the tower has no [CLS]); ``None`` when the features cannot be aligned (e.g. anyres crops).
        ``projections``: the outputs of :meth:`vision_projection_modules` captured during the tower's forward."""
        return None

    def vision_projection_modules(self) -> dict[str, nn.Module]:
        """Modules of the vision tower whose outputs :meth:`cls_attention` / :meth:`vision_global` read (e.g. the
        feature layer's ``q``/``k`` projections), captured by forward hooks so that they need not be recomputed."""
        return {}

    def vision_capture_module(self) -> nn.Module | None:
        """A vision block whose inputs :meth:`cls_attention` needs captured by a pre-hook (``None``: none)."""
        return None

    def flow_modules(self) -> list[nn.Module]:
        """Vision blocks whose inputs :meth:`flow_block` reduces during the tower's forward (pre-hooks)."""
        return []

    def flow_block(self, index: int, block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any],
                   grid_thw: torch.Tensor | None) -> Any:
        """What :meth:`vision_flow` needs from block ``index``, computed from its input ``hidden`` (kept small)."""
        return None

    def vision_flow(self, image_outputs: object, grid_thw: torch.Tensor | None,
                    blocks: list[Any] | None) -> list[dict[str, torch.Tensor]] | None:
        """Per item, FlowCut's per-layer statistics of each visual token over the vision layers before the one whose
        output the projector reads: ``rel`` (attention from the [CLS] or global query, mean over heads), ``sem``
        (the [CLS] value's attention over the values; ``None`` without a [CLS]) and ``vnorm`` (L1 norm of the
        head-averaged value), each ``[L, tokens]``; ``None`` when they cannot be aligned with the tokens."""
        return None

    def vision_global(self, image_outputs: object, grid_thw: torch.Tensor | None, block_input: Any,
                      threshold: float, projections: dict[str, torch.Tensor] | None = None
                      ) -> list[torch.Tensor] | None:
        """Per item, VFlowOpt's attention from the global queries of the vision layer whose output the projector
        reads (see :func:`tokenprune.scoring.vflow.global_query_attention`), one value per visual token."""
        return None

    def patch_entropies(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor | None) -> list[torch.Tensor] | None:
        """Per item, the grey-level entropy of each visual token's pixels (VFlowOpt's information map)."""
        return None

    def projector_sensitivity(self, image_outputs: object, directions: int, eps: float,
                              seed: int) -> list[torch.Tensor] | None:
        """Per item, each visual token's zeroth-order sensitivity of the projector to its input
        (:func:`tokenprune.scoring.zoo.projector_sensitivity`)."""
        return None

    def padding_tokens(self, pixel_values: torch.Tensor) -> list[torch.Tensor] | None:
        """Per image, which visual tokens cover padded canvas; ``None`` when the family cannot tell."""
        return None

    # -- family extras ------------------------------------------------------------------------------------
    def attach_extras(self, runtime: Any) -> None:
        """Installs family-specific patches (e.g. Qwen3-VL deepstack) through ``runtime.hooks``."""
