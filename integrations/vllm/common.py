"""What the vLLM plugin shares with the Hugging Face path, with no vLLM import: the config, the per-item budget and
the selection itself (``run_stage`` on one item's features, so both paths choose the same tokens)."""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch

from ...config import PRE_LLM, PruneConfig, Stage
from ...errors import ConfigError, InternalError
from ...registry import SCORERS, MethodSpec

ENV = "TOKENPRUNE_VLLM_CONFIG"
#: what the plugin can hand a scorer: vLLM computes (and caches) image embeddings without the prompt or the LM
PROVIDES = frozenset({"features", "vision_attention"})


class PruningMetrics:
    """Per-process counters of what the plugin pruned (every media item it selects for), and one DEBUG log line per
    item on the ``tokenprune.vllm`` logger — what an operator reads to see what pruning saves."""

    def __init__(self) -> None:
        self.items = self.tokens_in = self.tokens_kept = 0

    def record(self, tokens_in: int, kept: int) -> None:
        self.items += 1
        self.tokens_in += tokens_in
        self.tokens_kept += kept
        LOG.debug("tokenprune: media item of %d visual tokens -> %d kept (process totals: %d items, %d -> %d)",
                  tokens_in, kept, self.items, self.tokens_in, self.tokens_kept)

    def snapshot(self) -> dict[str, float]:
        return {"items": self.items, "visual_tokens_in": self.tokens_in, "visual_tokens_kept": self.tokens_kept,
                "kept_fraction": self.tokens_kept / self.tokens_in if self.tokens_in else 1.0}


LOG = logging.getLogger("tokenprune.vllm")
METRICS = PruningMetrics()


def config_from_env() -> PruneConfig | None:
    """The plugin's config from ``$TOKENPRUNE_VLLM_CONFIG`` (a JSON/YAML file path, a preset name, or inline JSON);
    None when unset (the plugin then changes nothing)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    if raw.startswith("{"):
        cfg = PruneConfig.from_dict(json.loads(raw))
    elif os.path.isfile(raw):
        cfg = PruneConfig.from_file(raw)
    else:
        cfg = PruneConfig.from_preset(raw)
    check(cfg)
    return cfg


def check(cfg: PruneConfig) -> Stage:
    """The single pre-LLM, query-free stage vLLM can run, or a ConfigError saying why not."""
    if len(cfg.stages) != 1:
        raise ConfigError(f"vLLM plugin: {len(cfg.stages)} stages given; inside vLLM only one pre_llm stage runs "
                          "(the embedding stage cannot prune again inside the LLM)")
    st = cfg.stages[0]
    if st.at != PRE_LLM:
        raise ConfigError(f"vLLM plugin: stage at={st.at!r}; in-LLM stages need the model's attention at prefill, "
                          "which vLLM's engine does not expose to plugins — use at='pre_llm'")
    reason = unservable_reason(st)
    if reason:
        raise ConfigError(f"vLLM plugin: {reason}")
    return st


def why_not_servable(spec: MethodSpec, options: dict[str, Any] | None = None) -> str | None:
    """Why a method (with ``options``) cannot run inside vLLM, read from its spec; ``None`` when it can."""
    opts = options or {}
    if opts.get("proportional"):
        return (f"{spec.kind} {spec.name!r} with proportional=True adds log(count) to merged keys' attention logits; "
                f"vLLM's attention backends take no per-key bias (use proportional=False)")
    if "pre_llm" not in spec.where:
        return f"{spec.kind} {spec.name!r} cannot run before the language model"
    if spec.is_query_dependent(opts):
        return (f"{spec.kind} {spec.name!r} needs the text of the prompt; vLLM computes and caches image embeddings "
                f"without it")
    missing = spec.captures_for(opts) - PROVIDES
    if missing:
        return (f"{spec.kind} {spec.name!r} needs {', '.join(sorted(missing))}, which the embedding stage does not "
                f"have (it provides {', '.join(sorted(PROVIDES))})")
    return None


def unservable_reason(stage: Stage) -> str | None:
    """Why a ``pre_llm`` stage cannot run inside vLLM, or ``None`` when it can."""
    for kind, spec in stage.specs.items():
        reason = why_not_servable(spec, stage.kwargs[kind])
        if reason:
            return f"{reason}. Servable scorers: {', '.join(servable_scorers())}"
    return None


def servable_scorers() -> list[str]:
    """Scorers that vLLM can run with their default options."""
    return [s.name for s in SCORERS.specs() if why_not_servable(s) is None]


def num_kept(num_tokens: int, cfg: PruneConfig, field: str = "keep") -> int:
    """Visual tokens kept for an item of ``num_tokens`` tokens — counted by the processor (placeholders), whose count
    the model then returns (``field`` names the setting in the error: the server's ``keep`` or a request's)."""
    if num_tokens <= 0:
        return num_tokens
    k = cfg.stages[0].budget(num_tokens, num_tokens)
    if k > num_tokens:
        raise ConfigError(f"vLLM plugin: {field}={cfg.stages[0].keep!r} asks for {k} tokens but an item has "
                          f"{num_tokens}; allowed: 1..{num_tokens} (or a fraction in (0, 1])")
    return k


def select(features: torch.Tensor, cfg: PruneConfig, vision: torch.Tensor | None = None,
           keep: int | None = None, modality: str = "image",
           grid: tuple[int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept (or merged) rows of one item's ``[n, D]`` features in their original order, and their indices;
    ``vision``: the item's ``[n]`` vision-tower [CLS] attention (``cls_attention`` scorer); ``keep``: the count the
    processor gave the item (a request's budget), else the config's; ``grid``: the item's ``(t, h, w)`` LLM-token
    grid (frames and cells for video scorers), as the HF path records it."""
    from ...runtime.items import MediaItem
    from ...runtime.stage import run_stage
    from .budgets import with_keep

    n = features.shape[0]
    if keep is not None:
        if not 1 <= keep <= n:
            raise InternalError(f"the processor gave an item of {n} tokens {keep} placeholders")
        cfg = with_keep(cfg, keep)
    k = num_kept(n, cfg)
    dev = features.device
    METRICS.record(n, k)
    if k == n:
        return features, torch.arange(n, device=dev)
    span = MediaItem(row=0, modality=modality, pos=torch.arange(n, device=dev), alive=torch.arange(n, device=dev),
                     orig_len=n, vision=None if vision is None else vision.to(dev), grid=grid)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    res = run_stage(cfg.stages[0], features[None], torch.ones(1, n, dtype=torch.bool, device=dev), [[span]], None,
                    gen, None)
    index = res.keep[0].nonzero().squeeze(1)
    if index.numel() != k:  # vLLM's scatter does not always catch a count mismatch
        raise InternalError(f"{index.numel()} rows for an item with {k} placeholders")
    return res.hidden[0][index], index

