"""Per-request budgets (no vLLM import): a request may carry ``mm_processor_kwargs={"tokenprune": {"keep": K}}``; the
server's config (``$TOKENPRUNE_VLLM_CONFIG``) stays the default and decides the method.

The processor turns the request's settings into one kept-token count per image (a ``tokenprune_keep`` field of the
image's processed inputs), uses it for the image's placeholders, and the model reads the same field to return that
many rows — so the count is computed once, on the processor side. vLLM hashes a request's ``mm_processor_kwargs``
into each item's multimodal hash, so the processor cache, the encoder cache and the prefix cache never mix budgets.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...config import PruneConfig, Stage
from ...errors import ConfigError

#: the key of a request's ``mm_processor_kwargs`` that tokenprune reads (never passed to the HF processor)
KEY = "tokenprune"
#: the per-item processed-input field holding the kept-token count, per modality
FIELDS = {"image": "tokenprune_keep", "video": "tokenprune_keep_video"}
FIELD = FIELDS["image"]
#: what a request may set
ALLOWED = ("keep",)
_WHERE = f"mm_processor_kwargs.{KEY}"


def strip(kwargs: Mapping[str, object]) -> Mapping[str, object]:
    """``kwargs`` without tokenprune's key (what the HF processor and vLLM's own processing see)."""
    return {k: v for k, v in kwargs.items() if k != KEY} if KEY in kwargs else kwargs


def request_config(cfg: PruneConfig, kwargs: Mapping[str, object]) -> PruneConfig:
    """The server's ``cfg`` with the request's budget (``kwargs[KEY]``) applied; ``cfg`` itself when the request sets
    none. Raises ConfigError naming the field for anything but ``{"keep": int >= 1 | float in (0, 1]}``."""
    raw: Any = kwargs.get(KEY)
    if raw is None:
        return cfg
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{_WHERE} must be an object such as {{"keep": 64}}, got {type(raw).__name__} {raw!r}')
    unknown = sorted(set(raw) - set(ALLOWED))
    if unknown:
        raise ConfigError(f"{_WHERE}: unknown field(s) {', '.join(map(repr, unknown))}; a request may set "
                          f"{', '.join(ALLOWED)} (the method is the server's config)")
    if "keep" not in raw:
        return cfg
    keep = raw["keep"]
    if isinstance(keep, bool) or not isinstance(keep, (int, float)):
        raise ConfigError(f"{_WHERE}.keep must be an int >= 1 (tokens per image) or a float in (0, 1] (fraction), "
                          f"got {type(keep).__name__} {keep!r}")
    try:
        stage = Stage(**{**cfg.stages[0].to_dict(), "keep": keep, "clip": False})
    except ConfigError as e:
        raise ConfigError(f"{_WHERE}.keep: {e}") from None
    return PruneConfig(stages=[stage], seed=cfg.seed)


def with_keep(cfg: PruneConfig, k: int) -> PruneConfig:
    """``cfg`` keeping exactly ``k`` tokens per item (what the model runs once the processor has counted)."""
    st = cfg.stages[0]
    if st.keep == k and isinstance(st.keep, int) and not st.clip:
        return cfg
    return PruneConfig(stages=[Stage(**{**st.to_dict(), "keep": int(k), "clip": False})], seed=cfg.seed)
