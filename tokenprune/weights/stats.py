"""Calibration statistics for the weight pruners, gathered through the whole VLM (visual tokens included).

Running sums only (bounded memory): per channel of each ``down_proj`` and ``o_proj`` input — sum, sum of squares,
count (and, for reconstruction / ZipLM, the Gram matrix ``Σ x xᵀ``: in² float64 per projection); per layer — mean cosine between block input and output (ShortGPT block influence) and between X and
X + Attn(LN(X)) (LLM-Drop attention influence). ``taylor=True`` also accumulates gradients of the next-token loss
over the text tokens (LLM-Pruner's first-order importance).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError
from .backbone import Backbone


GRAM_LIMIT = 16 * 2**30


@dataclass
class Running:
    total: torch.Tensor
    sq: torch.Tensor
    count: int = 0
    gram: torch.Tensor | None = None

    @classmethod
    def zeros(cls, n: int, gram: bool = False) -> "Running":
        return cls(torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64),
                   gram=torch.zeros(n, n, dtype=torch.float64) if gram else None)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).double().cpu()
        self.total += x.sum(0)
        self.sq += (x * x).sum(0)
        self.count += x.shape[0]
        if self.gram is not None:
            self.gram += x.T @ x

    @property
    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)

    @property
    def var(self) -> torch.Tensor:
        return (self.sq / max(self.count, 1) - self.mean ** 2).clamp_min(0)

    @property
    def norm(self) -> torch.Tensor:
        return self.sq.sqrt()


@dataclass
class CalibStats:
    mlp: list[Running]
    attn: list[Running]
    block_cos: list[float] = field(default_factory=list)
    attn_cos: list[float] = field(default_factory=list)
    tokens: int = 0
    samples: int = 0
    grads: dict[str, torch.Tensor] | None = None

    @property
    def block_influence(self) -> torch.Tensor:
        return 1 - torch.tensor(self.block_cos) / max(self.tokens, 1)

    @property
    def attn_influence(self) -> torch.Tensor:
        return 1 - torch.tensor(self.attn_cos) / max(self.tokens, 1)


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def collect(bb: Backbone, batches: Iterable[dict[str, Any]], taylor: bool = False, token_config: Any = None,
            progress: Any = None, gram: bool = False) -> CalibStats:
    """Runs ``batches`` (model inputs, one unpadded sample each) through the model and returns the statistics.

    ``token_config``: a :class:`~tokenprune.PruneConfig` attached during calibration, so the statistics describe the
    sequences the backbone will see under token pruning.
    """
    from ..api import pruned

    L = len(bb.layers)
    if gram:
        need = 8 * L * (bb.intermediate ** 2 + (bb.heads * bb.head_dim) ** 2)
        if need > GRAM_LIMIT:
            raise InputError(f"calibration: Gram matrices for reconstruction / ZipLM need {need / 2**30:.1f} GiB "
                             f"(L x (intermediate^2 + (heads x head_dim)^2) float64); the limit is "
                             f"{GRAM_LIMIT / 2**30:.0f} GiB")
    stats = CalibStats([Running.zeros(bb.intermediate, gram) for _ in range(L)],
                       [Running.zeros(bb.heads * bb.head_dim, gram) for _ in range(L)], [0.0] * L, [0.0] * L)
    handles: list = []
    ctx = pruned(bb.model, token_config) if token_config is not None else contextlib.nullcontext()
    with ctx:  # token pruning's layer hooks go first, so ours see the sequences the layers really get
        _register(bb, stats, handles)
        try:
            _run(bb, batches, stats, taylor, progress)
        finally:
            for h in handles:
                h.remove()
    if stats.samples == 0:
        raise InputError("calibration: no samples were given")
    return stats


def _register(bb: Backbone, stats: CalibStats, handles: list) -> None:
    def cos_sum(a: torch.Tensor, b: torch.Tensor) -> float:
        return torch.nn.functional.cosine_similarity(a.detach().float(), b.detach().float(), dim=-1).sum().item()

    for i, layer in enumerate(bb.layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(lambda m, a, i=i: stats.mlp[i].add(a[0])))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(lambda m, a, i=i: stats.attn[i].add(a[0])))
        box: dict[str, torch.Tensor] = {}

        def layer_pre(m, args, kwargs, box=box):
            box["x"] = _hidden_arg(args, kwargs)

        def layer_post(m, args, kwargs, out, i=i, box=box):
            x = box.pop("x")
            stats.block_cos[i] += cos_sum(x, _first(out))
            if i == 0:
                stats.tokens += x.shape[0] * x.shape[1]

        def attn_post(m, args, kwargs, out, i=i, box=box):
            x = box["x"]
            stats.attn_cos[i] += cos_sum(x, x + _first(out))

        handles.append(layer.register_forward_pre_hook(layer_pre, with_kwargs=True))
        handles.append(layer.register_forward_hook(layer_post, with_kwargs=True))
        handles.append(layer.self_attn.register_forward_hook(attn_post, with_kwargs=True))


def _run(bb: Backbone, batches: Iterable[dict[str, Any]], stats: CalibStats, taylor: bool, progress: Any) -> None:
    lm_params = dict(bb.lm.named_parameters())
    if taylor:
        stats.grads = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in lm_params.items()}
    for inputs in batches:
        mask = inputs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            raise InputError("calibration batches must be unpadded (one sample per batch)")
        if taylor:
            _taylor_step(bb, inputs, stats.grads, lm_params)
        else:
            with torch.no_grad():
                bb.model(**inputs)
        stats.samples += inputs["input_ids"].shape[0]
        if progress is not None:
            progress()


def _taylor_step(bb: Backbone, inputs: dict, grads: dict[str, torch.Tensor], params: dict) -> None:
    model = bb.model
    flags = {n: p.requires_grad for n, p in params.items()}
    with torch.enable_grad():
        for p in params.values():
            p.requires_grad_(True)
            p.grad = None
        out = model(**inputs)
        ids = inputs["input_ids"]
        logits = out.logits
        if logits.shape[1] != ids.shape[1]:
            raise InputError("taylor importance needs the full sequence: calibrate it without token pruning attached")
        labels = ids[:, 1:].clone()
        labels[labels == model.config.image_token_id] = -100
        if getattr(model.config, "video_token_id", None) is not None:
            labels[labels == model.config.video_token_id] = -100
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                                 labels.reshape(-1), ignore_index=-100)
        loss.backward()
    for n, p in params.items():
        if p.grad is not None:
            grads[n] += p.grad.float()
        p.grad = None
        p.requires_grad_(flags[n])
