"""``at="auto"``: the Entropy Collapse Layer (EntropyPrune), found by one dense pass."""
from __future__ import annotations

from typing import Any

import torch

from ..scoring.entropy import matrix_entropy
from .items import MediaItem


def entropy_collapse_layer(lm: Any, num_layers: int, lm_kwargs: dict, items: list[list[MediaItem]]
                           ) -> tuple[int, list[float]]:
    """Runs ``lm`` densely (the caller bypasses its own hooks) and records the matrix entropy of each item's visual
    hidden states entering every layer (mean over items); returns the layer entering which it drops most, and the
    per-layer entropies."""
    dense = {k: v for k, v in lm_kwargs.items() if k not in ("past_key_values", "use_cache")}
    with torch.no_grad():
        out = lm(**dense, use_cache=False, output_hidden_states=True)
    hs = out.hidden_states  # hs[l] enters layer l
    flat = [im for row in items for im in row]
    ent = torch.tensor([sum(float(matrix_entropy(hs[layer][im.row, im.pos])) for im in flat) / len(flat)
                        for layer in range(num_layers)])
    drops = ent[:-1] - ent[1:]  # drops[l - 1]: entropy lost entering layer l
    return int(drops.argmax()) + 1, ent.tolist()
