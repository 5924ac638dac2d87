"""Reducers: turn a selection into the kept hidden states. ``drop`` discards the pruned tokens."""
from __future__ import annotations

import torch

from .registry import REDUCERS


@REDUCERS.register("drop")
def drop(hidden: torch.Tensor, keep_idx: torch.Tensor, pruned_idx: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Returns ``hidden`` unchanged: the pruned rows are simply not gathered by the runtime.

    ``hidden``: ``[V, D]`` one image's visual tokens; ``keep_idx``/``pruned_idx`` index into it. Reducers return the
    ``[len(keep_idx), D]`` rows that replace the kept tokens.
    """
    return hidden[keep_idx]
