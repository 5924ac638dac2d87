"""What the vLLM plugin shares with the Hugging Face path, with no vLLM import: the config, the per-item budget and
the selection itself (``run_stage`` on one item's features, so both paths choose the same tokens)."""
from __future__ import annotations

import json
import os

import torch

from ...config import PRE_LLM, PruneConfig, Stage
from ...errors import ConfigError

ENV = "TOKENPRUNE_VLLM_CONFIG"
#: scorers that need neither the text nor the language model (the embedding stage sees only the image)
QUERY_FREE_SCORERS = ("norm", "uniform", "random", "entropy", "cls_attention")
SELECTORS = ("topk", "maxmin", "mmr", "adaptive", "visionzip")
REDUCERS = ("drop", "merge")


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
    if st.scorer not in QUERY_FREE_SCORERS:
        raise ConfigError(f"vLLM plugin: scorer {st.scorer!r} needs the text or the language model; vLLM computes and "
                          f"caches image embeddings without the prompt. Query-free scorers: "
                          f"{', '.join(QUERY_FREE_SCORERS)}")
    if st.selector not in SELECTORS or st.reducer not in REDUCERS:
        raise ConfigError(f"vLLM plugin: selector {st.selector!r} / reducer {st.reducer!r}; allowed: "
                          f"{', '.join(SELECTORS)} / {', '.join(REDUCERS)}")
    return st


def num_kept(num_tokens: int, cfg: PruneConfig) -> int:
    """Visual tokens kept for an item of ``num_tokens`` tokens — used by the processor (placeholder count) and the
    model (rows returned), which must agree."""
    if num_tokens <= 0:
        return num_tokens
    k = cfg.stages[0].budget(num_tokens)
    if k > num_tokens:
        raise ConfigError(f"vLLM plugin: keep={cfg.stages[0].keep!r} asks for {k} tokens but an item has "
                          f"{num_tokens}; allowed: 1..{num_tokens} (or a fraction in (0, 1])")
    return k


def select(features: torch.Tensor, cfg: PruneConfig,
           vision: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept (or merged) rows of one item's ``[n, D]`` features in their original order, and their indices;
    ``vision``: the item's ``[n]`` vision-tower [CLS] attention (``cls_attention`` scorer)."""
    from ...runtime.stage import ImageSpan, run_stage

    n = features.shape[0]
    k = num_kept(n, cfg)
    dev = features.device
    if k == n:
        return features, torch.arange(n, device=dev)
    span = ImageSpan(row=0, modality="image", pos=torch.arange(n, device=dev), alive=torch.arange(n, device=dev),
                     orig_len=n, vision=None if vision is None else vision.to(dev))
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    res = run_stage(cfg.stages[0], features[None], torch.ones(1, n, dtype=torch.bool, device=dev), [[span]], None,
                    gen, None)
    index = res.keep[0].nonzero().squeeze(1)
    if index.numel() != k:  # vLLM's scatter does not always catch a count mismatch
        raise RuntimeError(f"tokenprune: {index.numel()} rows for an item with {k} placeholders")
    return res.hidden[0][index], index

