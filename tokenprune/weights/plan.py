"""What to prune (``WeightSpec``, the user's request) and what will be pruned (``WeightPlan``, computed from scores).

``stock`` plans keep one MLP width (a multiple of ``multiple``) and the same head counts in every layer and remove
whole blocks, so the result is a standard config; per-layer (e.g. FLAP's global) preferences are projected onto that
uniform plan by keeping each layer's own top channels. ``custom`` plans allocate MLP widths globally (scores
standardised per layer, one threshold) and may drop attention sublayers; they load through ``load_pruned()``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import ConfigError
from .backbone import Backbone
from .importance import METHODS, TAYLOR, group_scores, head_scores, mlp_scores
from .stats import CalibStats


@dataclass
class WeightSpec:
    """A structured-pruning request for the language backbone.

    mlp: fraction of MLP channels removed, in [0, 1). kv_groups: KV groups (a KV head with its query heads) removed
    per layer. q_heads: query heads removed inside every kept group. blocks: decoder blocks removed. attn_layers:
    attention sublayers removed (``custom`` only). hidden: must stay 0 — the hidden size is never pruned.
    reconstruct: re-fit the surviving ``down_proj`` / ``o_proj`` columns to the dense output by least squares on the
    calibration Gram matrices (default: on for ``ziplm``, off otherwise); damp: its relative damping.
    """
    mlp: float = 0.0
    kv_groups: int = 0
    q_heads: int = 0
    blocks: int = 0
    attn_layers: int = 0
    method: str = "wanda-sp"
    export: str = "stock"
    multiple: int = 32
    bias_compensation: bool | None = None
    hidden: float = 0.0
    reconstruct: bool | None = None
    damp: float = 1e-4

    @property
    def reconstructs(self) -> bool:
        return self.reconstruct if self.reconstruct is not None else self.method == "ziplm"

    @property
    def needs_gram(self) -> bool:
        return self.reconstructs or self.method == "ziplm"

    def check_types(self) -> None:
        """Type checks that need no model (run on loading a config, before any calibration)."""
        for name in ("kv_groups", "q_heads", "blocks", "attn_layers", "multiple"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name}: got {v!r}; allowed: an int")
        for name in ("mlp", "hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{name}: got {v!r}; allowed: a number")
        for name in ("bias_compensation", "reconstruct"):
            v = getattr(self, name)
            if not isinstance(v, bool) and v is not None:
                raise ConfigError(f"{name}: got {v!r}; allowed: true or false")
        if isinstance(self.damp, bool) or not isinstance(self.damp, (int, float)) or not self.damp >= 0:
            raise ConfigError(f"damp: got {self.damp!r}; allowed: a number >= 0")
        if not isinstance(self.method, str) or not isinstance(self.export, str):
            raise ConfigError(f"method/export: got {self.method!r}/{self.export!r}; allowed: strings")

    def validate_for(self, bb: Backbone) -> None:
        self.check_types()
        L, kv, rep = len(bb.layers), bb.kv_heads, bb.heads // bb.kv_heads
        if self.hidden:
            raise ConfigError(f"hidden: got {self.hidden}; the hidden size is never pruned (the vision projector "
                              f"writes {bb.hidden} features and every residual connection carries them)")
        if not (isinstance(self.mlp, (int, float)) and 0 <= self.mlp < 1):
            raise ConfigError(f"mlp: got {self.mlp!r}; allowed: a fraction in [0, 1)")
        if self.method not in METHODS:
            raise ConfigError(f"method: got {self.method!r}; allowed: {', '.join(METHODS)}")
        if self.export not in ("stock", "custom"):
            raise ConfigError(f"export: got {self.export!r}; allowed: stock, custom")
        if self.multiple < 1:
            raise ConfigError(f"multiple: got {self.multiple}; allowed: >= 1")
        if not 0 <= self.kv_groups < kv:
            raise ConfigError(f"kv_groups: got {self.kv_groups}; allowed: 0..{kv - 1} (the model has {kv} KV groups "
                              "per layer and at least one must stay)")
        if not 0 <= self.q_heads < rep:
            raise ConfigError(f"q_heads: got {self.q_heads}; allowed: 0..{rep - 1} query heads per group "
                              f"({bb.heads} query heads / {kv} KV heads = {rep} per group; GQA needs >= 1)")
        if not 0 <= self.blocks < L:
            raise ConfigError(f"blocks: got {self.blocks}; allowed: 0..{L - 1}")
        if self.method == "ziplm" and self.export != "stock":
            raise ConfigError("method: ziplm plans one width per layer by structured OBS; use export='stock'")
        if self.attn_layers and self.export != "custom":
            raise ConfigError("attn_layers: dropping attention sublayers needs export='custom' (a stock config "
                              "cannot express a layer without attention)")
        if not 0 <= self.attn_layers <= L - self.blocks - 1:
            raise ConfigError(f"attn_layers: got {self.attn_layers}; allowed: 0..{L - self.blocks - 1}")
        if (self.kv_groups or self.q_heads) and not bb.stock_heads:
            raise ConfigError(f"kv_groups/q_heads: {bb.family}'s attention derives head_dim from hidden_size / "
                              "num_heads and asserts it, so its config cannot hold fewer heads; prune MLP channels "
                              "and blocks")
        if self.bias_compensation and not bb.bias_config:
            raise ConfigError(f"bias_compensation: {bb.config.model_type} configs cannot hold output biases "
                              "(only Llama's mlp_bias/attention_bias can)")

    def mlp_width(self, m: int) -> int:
        """The uniform width a stock plan keeps (rounded to ``multiple``, at least one multiple, at most m)."""
        if self.mlp == 0:
            return m
        step = min(self.multiple, m)
        return max(step, min(m, int(round(m * (1 - self.mlp) / step)) * step))


@dataclass
class LayerPlan:
    index: int  # index in the dense model
    mlp_keep: list[int]
    heads_keep: list[int]  # query heads, dense numbering, grouped by kept KV head
    kv_keep: list[int]
    attention: bool = True


@dataclass
class WeightPlan:
    spec: WeightSpec
    dense_layers: int
    layers: list[LayerPlan]
    scores: dict[str, Any] = field(default_factory=dict)

    @property
    def removed_blocks(self) -> list[int]:
        kept = {lp.index for lp in self.layers}
        return [i for i in range(self.dense_layers) if i not in kept]

    def to_dict(self) -> dict[str, Any]:
        return {"spec": asdict(self.spec), "dense_layers": self.dense_layers, "removed_blocks": self.removed_blocks,
                "layers": [asdict(lp) for lp in self.layers],
                "widths": [len(lp.mlp_keep) for lp in self.layers], "scores": self.scores}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WeightPlan":
        return cls(WeightSpec(**d["spec"]), d["dense_layers"], [LayerPlan(**lp) for lp in d["layers"]],
                   d.get("scores", {}))


def _top(scores: torch.Tensor, k: int) -> list[int]:
    return sorted(torch.topk(scores, k).indices.tolist())


def make_plan(bb: Backbone, stats: CalibStats, spec: WeightSpec) -> WeightPlan:
    """Scores every layer with ``spec.method`` and allocates the request (see the module docstring)."""
    spec.validate_for(bb)
    L, H, kv, hd, m = len(bb.layers), bb.heads, bb.kv_heads, bb.head_dim, bb.intermediate
    if spec.method in TAYLOR and stats.grads is None:
        raise ConfigError(f"method {spec.method!r} needs statistics collected with taylor=True")
    if spec.needs_gram and stats.mlp[0].gram is None:
        raise ConfigError(f"method {spec.method!r} / reconstruct needs statistics collected with gram=True")
    mlp_s, head_s, group_s = [], [], []
    for i, layer in enumerate(bb.layers):
        prefix = f"layers.{i}"
        if spec.method == "ziplm":
            from .ziplm import ziplm_scores

            m_s, h, g = ziplm_scores(layer, stats.mlp[i], stats.attn[i], spec, bb)
            mlp_s.append(m_s)
            head_s.append(h)
            group_s.append(g)
            continue
        mlp_s.append(mlp_scores(spec.method, layer.mlp, stats.mlp[i], stats.grads, prefix))
        h = head_scores(spec.method, layer.self_attn, stats.attn[i], stats.grads, prefix, H, hd)
        head_s.append(h)
        group_s.append(group_scores(spec.method, layer.self_attn, h, stats.grads, prefix, kv, hd))
    block = stats.block_influence
    removed = set(torch.topk(-block, spec.blocks).indices.tolist()) if spec.blocks else set()
    kept_layers = [i for i in range(L) if i not in removed]
    widths = _widths(spec, [mlp_s[i] for i in kept_layers], m)
    attn_inf = stats.attn_influence
    no_attn = set()
    if spec.attn_layers:
        order = sorted(kept_layers, key=lambda i: attn_inf[i].item())
        no_attn = set(order[:spec.attn_layers])
    layers = []
    for i, w in zip(kept_layers, widths):
        groups = _top(group_s[i], kv - spec.kv_groups)
        rep = H // kv
        heads = []
        for g in groups:
            within = head_s[i][g * rep:(g + 1) * rep]
            heads += [g * rep + j for j in _top(within, rep - spec.q_heads)]
        layers.append(LayerPlan(i, _top(mlp_s[i], w), heads, groups, i not in no_attn))
    scores = {"mlp": [s.tolist() for s in mlp_s], "heads": [s.tolist() for s in head_s],
              "kv_groups": [s.tolist() for s in group_s], "block_influence": block.tolist(),
              "attention_influence": attn_inf.tolist()}
    return WeightPlan(spec, L, layers, scores)


def _widths(spec: WeightSpec, scores: list[torch.Tensor], m: int) -> list[int]:
    if spec.export == "stock" or spec.mlp == 0:
        return [spec.mlp_width(m)] * len(scores)
    z = [(s - s.mean()) / (s.std() + 1e-12) for s in scores]
    keep_total = int(round(m * len(scores) * (1 - spec.mlp)))
    threshold = torch.sort(torch.cat(z), descending=True).values[keep_total - 1]
    step = min(spec.multiple, m)
    return [max(step, min(m, int(math.floor((zz >= threshold).sum().item() / step + 0.5)) * step)) for zz in z]


def expected_params(bb: Backbone, plan: WeightPlan, mlp_bias: bool = False, attn_bias: bool = False) -> int:
    """The parameter count the plan promises, from the dense model's non-layer parameters and per-layer shapes."""
    layer_params = sum(p.numel() for p in bb.layers.parameters())
    total = sum(p.numel() for p in bb.model.parameters()) - layer_params
    d, hd = bb.hidden, bb.head_dim
    qkv_bias = bb.layers[0].self_attn.q_proj.bias is not None
    for lp in plan.layers:
        dense = bb.layers[lp.index]
        norm = sum(p.numel() for n, p in dense.named_parameters() if "norm" in n and "self_attn" not in n)
        total += norm
        w = len(lp.mlp_keep)
        total += 3 * d * w + ((2 * w + d) if mlp_bias else 0)
        if lp.attention:
            q, k = len(lp.heads_keep) * hd, len(lp.kv_keep) * hd
            total += d * q + 2 * d * k + q * d
            total += (q + 2 * k) if qkv_bias or attn_bias else 0
            total += d if attn_bias else 0
            total += sum(p.numel() for n, p in dense.self_attn.named_parameters() if "norm" in n)
    return total
