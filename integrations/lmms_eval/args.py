"""``--model_args`` of the tokenprune lmms-eval model: parsed and validated before any model loads.

lmms-eval hands values over loosely typed (``keep=64`` an int, ``keep=0.25`` a float, ``true`` a bool, anything
else a string), so every value is checked here and a bad one raises a :class:`ConfigError` naming the argument.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config import PruneConfig
from ...errors import ConfigError

ALLOWED = ("pretrained", "preset", "keep", "layer", "config", "dtype", "device", "device_map", "attn_implementation",
           "batch_size", "max_new_tokens", "stats_path", "video_frames", "video_fps", "max_frames")
DTYPES = ("float32", "float16", "bfloat16", "auto")


@dataclass
class ModelArgs:
    pretrained: str = "embedded"
    preset: str | None = None
    keep: Any = None
    layer: Any = None
    config: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    device_map: str | None = None
    attn_implementation: str | None = None
    batch_size: int = 1
    max_new_tokens: int | None = None
    stats_path: str | None = None
    video_frames: Any = None  # frames sampled uniformly from each video (None: every frame, up to max_frames)
    video_fps: Any = None  # or: frames per second of video
    max_frames: Any = 32

    @classmethod
    def parse(cls, kwargs: dict[str, Any]) -> "ModelArgs":
        unknown = sorted(set(kwargs) - set(ALLOWED))
        if unknown:
            raise ConfigError(f"model_args: unknown {unknown}; allowed: {', '.join(ALLOWED)}")
        a = cls(**kwargs)
        a.batch_size = _int(a.batch_size, "batch_size", low=1)
        if a.max_new_tokens is not None:
            a.max_new_tokens = _int(a.max_new_tokens, "max_new_tokens", low=1)
        if a.video_frames is not None and a.video_fps is not None:
            raise ConfigError("video_frames/video_fps: give one of them, not both")
        if a.video_frames is not None:
            a.video_frames = _int(a.video_frames, "video_frames", low=1)
        if a.video_fps is not None:
            try:
                a.video_fps = float(a.video_fps)
            except (TypeError, ValueError):
                a.video_fps = -1.0
            if not a.video_fps > 0:
                raise ConfigError(f"video_fps: got {kwargs['video_fps']!r}; allowed: a number > 0")
        a.max_frames = _int(a.max_frames, "max_frames", low=1)
        if a.dtype not in DTYPES:
            raise ConfigError(f"dtype: got {a.dtype!r}; allowed: {', '.join(DTYPES)}")
        if a.preset is not None and a.config is not None:
            raise ConfigError("preset/config: give a preset (with keep/layer) or a config file, not both")
        if a.preset is None and (a.keep is not None or a.layer is not None):
            raise ConfigError("keep/layer: need preset=NAME (or put the stages in config=FILE)")
        if a.keep is not None:
            a.keep = _keep(a.keep)
        if a.layer is not None:
            a.layer = _int(a.layer, "layer", low=0)
        return a

    def prune_config(self, num_layers: int) -> PruneConfig | None:
        """The pruning config for an LM of ``num_layers`` layers (None: dense)."""
        if self.config is not None:
            return PruneConfig.from_file(self.config)
        if self.preset is None:
            return None
        overrides = {k: v for k, v in (("keep", self.keep), ("layer", self.layer)) if v is not None}
        return PruneConfig.from_preset(str(self.preset), num_layers=num_layers, **overrides)


def _int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{name}: got {value!r}; allowed: an int >= {low}")
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: got {value!r}; allowed: an int >= {low}") from None
    if v < low:
        raise ConfigError(f"{name}: got {value!r}; allowed: an int >= {low}")
    return v


def _keep(value: Any) -> int | float | list:
    """``64`` (tokens per item), ``0.25`` (a fraction) or ``288/144/64`` (one budget per stage of the preset)."""
    if isinstance(value, str) and "/" in value:
        return [_keep(v) for v in value.split("/")]
    if isinstance(value, bool):
        raise ConfigError(f"keep: got {value!r}; allowed: an int >= 1, a fraction in (0, 1], or a/b/c per stage")
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise ConfigError(f"keep: got {value!r}; allowed: an int >= 1, a fraction in (0, 1], or a/b/c per "
                              f"stage") from None
    if isinstance(value, float) and value > 1 and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value < 1 or isinstance(value, float) and not 0 < value <= 1:
        raise ConfigError(f"keep: got {value!r}; allowed: an int >= 1, a fraction in (0, 1], or a/b/c per stage")
    return value
