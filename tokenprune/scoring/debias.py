"""``debiased_attention``: attention with its position (recency) trend removed and sinks/padding excluded."""
from __future__ import annotations

import json
import math
import os

import torch

from ..errors import ConfigError
from ..registry import SCORERS, Option
from .attention import QUERY_OPTION
from .view import TokenView

BASES = ("attention", "cls_attention")
MODES = ("online", "calibrated")


def robust_line(t: torch.Tensor, y: torch.Tensor, iters: int = 6, c: float = 1.345) -> tuple[float, float]:
    """Huber-IRLS fit of ``y ≈ a + b·t``; returns ``(a, b)``."""
    w = torch.ones_like(y)
    a = b = 0.0
    for _ in range(iters):
        sw = w.sum().clamp(min=1e-12)
        tm, ym = (w * t).sum() / sw, (w * y).sum() / sw
        var = (w * (t - tm) ** 2).sum()
        b = float((w * (t - tm) * (y - ym)).sum() / var.clamp(min=1e-12)) if var > 0 else 0.0
        a = float(ym - b * tm)
        r = y - (a + b * t)
        scale = 1.4826 * r.abs().median().clamp(min=1e-9)
        w = (c * scale / r.abs().clamp(min=1e-12)).clamp(max=1.0)
    return a, b


def _robust_z(x: torch.Tensor) -> torch.Tensor:
    med = x.median()
    return (x - med) / (1.4826 * (x - med).abs().median()).clamp(min=1e-9)


def load_calibration(path: str) -> dict:
    """Reads a trend file written by :func:`tokenprune.calibrate.save_calibration`."""
    try:
        with open(path) as f:
            data = json.load(f)
        float(data["slope"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"Stage.calibration: cannot read a position-trend file from {path!r} ({e}); "
                          f"write one with tokenprune.calibrate.fit_position_trend") from e
    return data


def _validate(*, mode: str, calibration: str | None, **_: object) -> None:
    if mode == "calibrated":
        if not calibration or not os.path.exists(calibration):
            raise ConfigError(f"Stage.calibration: mode='calibrated' needs an existing calibration file, got "
                              f"{calibration!r}")
        load_calibration(calibration)


def _captures(*, base: str, padding: bool, **_: object) -> set[str]:
    return ({"vision_attention"} if base == "cls_attention" else {"lm_attention"}) | ({"padding"} if padding else set())


OPTIONS = [
    Option("base", str, "attention", "importance source: LM attention at this layer or vision-tower [CLS]",
           choices=BASES),
    QUERY_OPTION,
    Option("mode", str, "online", "fit the trend per image, or read it from a calibration file", choices=MODES),
    Option("calibration", str, None, "a trend file from tokenprune.calibrate (mode='calibrated')", none_ok=True),
    Option("sinks", bool, True, "exclude attention sinks"),
    Option("padding", bool, True, "exclude tokens on padded canvas"),
    Option("sink_z", float, 3.5, "robust z-score above which a token is a sink", low=1e-9),
]


@SCORERS.register("debiased_attention", options=OPTIONS, captures=_captures, validate=_validate,
                  query_dependent=lambda base, **_: base == "attention")
def debiased_attention_scores(view: TokenView, *, base: str = "attention", query: str = "last",
                              mode: str = "online", calibration: str | None = None, sinks: bool = True,
                              padding: bool = True, sink_z: float = 3.5) -> torch.Tensor:
    """Attention Debiasing for token pruning (position-trend removal + sink/padding suppression).

    With ``a_v`` the base attention (``attention`` at this layer or the vision tower's ``cls_attention``) and
    ``t_v ∈ [0, 1]`` the token's position inside its image: fit ``log a_v ≈ α + β·t_v`` per image by Huber-robust
    least squares (``mode="online"``) or take ``β`` from a calibration file (``mode="calibrated"``), and score
    ``a_v / exp(β·t_v)``. Excluded (score ``-inf``, so never kept; the budget is capped to what remains): padded
    canvas patches (``padding``, where the adapter can tell) and attention sinks (``sinks``: robust z-scores of
    both ``log a_v`` and the feature norm above ``sink_z``).
    """
    raw = view.attention(query) if base == "attention" else view.vision_attention()
    raw = raw.float()
    t = view.local_index.float() / (view.item_len - 1).clamp(min=1).float()
    y = raw.clamp(min=1e-12).log()
    excluded = ~view.visual_mask
    if padding and view.padding_mask is not None:
        excluded = excluded | view.padding_mask
    slope = float(load_calibration(calibration)["slope"]) if mode == "calibrated" else None
    norms = view.features.float().norm(dim=-1) if sinks else None
    beta = torch.zeros_like(raw)
    for r, m in view.item_masks():
        if sinks and int(m.sum()) > 8:
            sink = (_robust_z(y[r][m]) > sink_z) & (_robust_z(norms[r][m]) > sink_z)
            idx = m.nonzero().squeeze(1)
            excluded[r, idx[sink]] = True
        fit = m & ~excluded[r]
        if slope is not None:
            beta[r, m] = slope
        elif int(fit.sum()) >= 3:
            beta[r, m] = robust_line(t[r][fit], y[r][fit])[1]
    score = raw / torch.exp(beta * t)
    return score.masked_fill(excluded, -math.inf)

