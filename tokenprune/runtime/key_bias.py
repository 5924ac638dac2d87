"""Proportional attention (ToMe): an additive ``log(count)`` on the attention logits of merged keys."""
from __future__ import annotations

from typing import Any

import torch

from .items import MediaItem


def segment_key_bias(images: list[list[MediaItem]], valid: torch.Tensor) -> torch.Tensor | None:
    """``[B, L]`` bias over a compacted prompt: ``log(count)`` at each merged visual token, 0 elsewhere; ``None``
    when no item carries counts (no proportional merge so far)."""
    if not any(im.counts is not None for row in images for im in row):
        return None
    bias = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
    for r, row in enumerate(images):
        for im in row:
            if im.counts is not None:
                bias[r, im.pos] = im.counts.to(bias.device).log()
    return bias


def add_key_bias(mask: Any, bias: torch.Tensor, hidden: torch.Tensor, past: int) -> torch.Tensor:
    """``mask`` (a layer's attention mask from transformers: ``None`` = plain causal, bool = allowed, float =
    additive) as an additive float mask with ``bias`` added on the first ``bias.shape[1]`` keys (the prompt; keys
    after it — decode steps — get 0). ``past``: keys already cached before this forward (used when ``mask`` is
    ``None``)."""
    q = hidden.shape[1]
    dtype, dev = hidden.dtype, hidden.device
    if mask is None:
        kv = past + q
        allowed = (torch.arange(kv, device=dev)[None, :] <= torch.arange(q, device=dev)[:, None] + past)[None, None]
        base = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill(~allowed, torch.finfo(dtype).min)
    elif mask.dtype == torch.bool:
        base = torch.zeros(mask.shape, dtype=dtype, device=dev).masked_fill(~mask, torch.finfo(dtype).min)
    else:
        base = mask.to(dtype)
    kv = base.shape[-1]
    full = torch.zeros(bias.shape[0], kv, dtype=dtype, device=dev)
    full[:, :bias.shape[1]] = bias.to(dtype)
    return base + full[:, None, None, :]
