"""Public entry points: :func:`apply`, :class:`PruneHandle`, :func:`pruned`."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch.nn as nn

from .adapters import get_adapter
from .config import PruneConfig
from .errors import AlreadyAttachedError, ConfigError
from .runtime.engine import HANDLE_ATTR, Runtime
from .runtime.prefill import StageTiming
from .stats import PruneStats, build_stats

class PruneHandle:
    """Pruning attached to one model instance. ``remove()`` restores the model exactly."""

    def __init__(self, model: nn.Module, runtime: Runtime) -> None:
        self.model = model
        self.config = runtime.config
        self._runtime: Runtime | None = runtime

    @property
    def attached(self) -> bool:
        return self._runtime is not None

    @property
    def stats(self) -> PruneStats | None:
        """Statistics of the last prefill (``None`` before the first call)."""
        rt = self._runtime
        st = rt.last_state if rt is not None else None
        if st is None:
            return None
        if st.stats is None:  # built once per call (decode steps change nothing it reports)
            st.stats = build_stats(st, rt.adapter.num_layers, rt.adapter.text_config)
        return st.stats

    @property
    def auto_layer(self) -> int | None:
        """The LM layer an ``at="auto"`` stage resolved to (the Entropy Collapse Layer), once a prefill found it."""
        rt = self._runtime
        return rt.auto_layer if rt is not None else None

    def on_stage(self, callback: Callable[[StageTiming], None]) -> Callable[[], None]:
        """Calls ``callback(StageTiming(stage_index, at, ms))`` after every stage that runs at prefill (scoring,
        selection and reduction, including the attention it computes); returns a function that unregisters it."""
        rt = self._runtime
        if rt is None:
            raise ConfigError("handle: removed; on_stage needs an attached handle")
        rt.stage_callbacks.append(callback)
        return lambda: callback in rt.stage_callbacks and rt.stage_callbacks.remove(callback)

    def remove(self) -> None:
        """Removes every hook and patch; idempotent."""
        if self._runtime is not None:
            self._runtime.detach()
            self._runtime = None

    def __enter__(self) -> "PruneHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"PruneHandle({type(self.model).__name__}, {self.config!r}, attached={self.attached})"


def resolve_config(config: PruneConfig | str | dict, num_layers: int | None = None, **overrides: Any) -> PruneConfig:
    """A :class:`PruneConfig` from a config, a preset name (with overrides), a config file (``.json``/``.yaml``, e.g.
    the one ``tokenprune tune`` writes) or a dict."""
    if isinstance(config, str) and config.endswith((".json", ".yaml", ".yml")):
        if overrides:
            raise ConfigError(f"apply(): keyword overrides {sorted(overrides)} are only accepted with a preset name")
        return PruneConfig.from_file(config)
    if isinstance(config, str):
        return PruneConfig.from_preset(config, num_layers=num_layers, **overrides)
    if overrides:
        raise ConfigError(f"apply(): keyword overrides {sorted(overrides)} are only accepted with a preset name")
    if isinstance(config, dict):
        return PruneConfig.from_dict(config)
    if not isinstance(config, PruneConfig):
        raise ConfigError(f"config: expected a PruneConfig, a preset name or a dict, got {type(config).__name__}")
    return config


def apply(model: nn.Module, config: PruneConfig | str | dict, **overrides: Any) -> PruneHandle:
    """Attaches visual-token pruning to ``model`` (a HF ``*ForConditionalGeneration`` VLM).

    ``config`` is a :class:`PruneConfig`, a preset name (``apply(model, "fastv", keep=64, layer=2)``), a config file
    path (``apply(model, "auto-tuned.yaml")``) or a dict.
    Everything is validated before the model is touched. Applying twice to one model raises
    :class:`AlreadyAttachedError`: put all stages in one config instead.
    """
    adapter = get_adapter(model)
    cfg = resolve_config(config, num_layers=adapter.num_layers, **overrides)
    cfg.validate_for(adapter.num_layers)
    if model.__dict__.get(HANDLE_ATTR) is not None:
        raise AlreadyAttachedError("model: already has a tokenprune handle attached; call handle.remove() first, "
                                   "or combine the stages into one PruneConfig")
    runtime = Runtime(model, adapter, cfg)
    handle = PruneHandle(model, runtime)
    runtime.attach(handle)
    return handle


@contextlib.contextmanager
def pruned(model: nn.Module, config: PruneConfig | str | dict, **overrides: Any) -> Iterator[PruneHandle]:
    """``with pruned(model, "fastv", keep=64): model.generate(...)`` — removed on exit, even on error."""
    handle = apply(model, config, **overrides)
    try:
        yield handle
    finally:
        handle.remove()
