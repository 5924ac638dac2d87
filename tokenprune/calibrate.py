"""Offline calibration of the attention position trend used by ``debiased_attention(mode="calibrated")``."""
from __future__ import annotations

import json
from typing import Any, Iterable

import torch

from .api import pruned
from .config import PruneConfig, Stage
from .errors import InputError
from .registry import SCORERS
from .scoring.attention import QUERY_OPTION
from .scoring.debias import robust_line
from .scoring.view import TokenView

_RECORD: list[tuple[torch.Tensor, torch.Tensor]] = []


def _trend_probe(view: TokenView, *, query: str = "last") -> torch.Tensor:
    """Records (position in image, centred log attention) per image; internal to calibration."""
    a = view.attention(query).float().clamp(min=1e-12).log()
    t = view.local_index.float() / (view.item_len - 1).clamp(min=1).float()
    for r, m in view.item_masks():
        _RECORD.append((t[r][m], a[r][m] - a[r][m].median()))
    return torch.zeros_like(a)


def fit_position_trend(model: torch.nn.Module, batches: Iterable[dict[str, Any]], layer: int,
                       query: str = "last") -> dict[str, Any]:
    """Fits ``log attention ≈ α_image + β·t`` over every image of ``batches`` (model inputs) at LM ``layer``.

    Returns ``{"slope": β, "layer", "query", "model_type", "images"}`` for :func:`save_calibration`.
    """
    _RECORD.clear()
    probe = SCORERS.temporary("_trend_probe", _trend_probe, options=[QUERY_OPTION], captures={"lm_attention"},
                              query_dependent=True)
    with probe, pruned(model, PruneConfig([Stage(layer, keep=1, scorer="_trend_probe", query=query)])):
        with torch.no_grad():
            for inputs in batches:
                model(**inputs)
    if not _RECORD:
        raise InputError("batches: the calibration batches contained no images")
    t = torch.cat([r[0] for r in _RECORD])
    y = torch.cat([r[1] for r in _RECORD])
    _, slope = robust_line(t, y)
    out = {"slope": slope, "layer": layer, "query": query, "model_type": model.config.model_type,
           "images": len(_RECORD)}
    _RECORD.clear()
    return out


def save_calibration(trend: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(trend, f, indent=2)


def processor_batches(processor: Any, images: list[Any], prompt: str = "describe the image .",
                      batch_size: int = 4) -> Iterable[dict[str, Any]]:
    """Model inputs for ``images`` (PIL) through ``processor``'s chat template, ``batch_size`` at a time."""
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True)
    for a in range(0, len(images), batch_size):
        chunk = images[a:a + batch_size]
        yield dict(processor(images=chunk, text=[text] * len(chunk), return_tensors="pt", padding=True))


def load_images(source: str, count: int, seed: int = 0) -> list[Any]:
    """``count`` PIL images from a folder (sorted), or seeded random-noise images for ``source="synthetic"``."""
    import os

    from PIL import Image

    if source == "synthetic":
        g = torch.Generator().manual_seed(seed)
        return [Image.fromarray((torch.rand(336, 336, 3, generator=g) * 255).byte().numpy()) for _ in range(count)]
    if not os.path.isdir(source):
        raise InputError(f"source: {source!r} is not a folder (or 'synthetic')")
    names = sorted(f for f in os.listdir(source) if f.lower().endswith((".png", ".jpg", ".jpeg", ".webp")))
    if not names:
        raise InputError(f"source: no .png/.jpg/.jpeg/.webp files in {source!r}")
    return [Image.open(os.path.join(source, f)).convert("RGB") for f in names[:count]]
