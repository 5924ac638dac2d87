"""``temporal`` scorer: temporal redundancy of video tokens (EVS / DyCoke-style)."""
from __future__ import annotations

import math

import torch

from ..registry import SCORERS, Option
from .view import TokenView


@SCORERS.register("temporal", captures={"features"}, options=[
    Option("threshold", float, 0.0, "tokens changed by at most this cosine distance are never kept (0: budget only)",
           low=0.0, high=2.0)])
def temporal_scores(view: TokenView, *, threshold: float = 0.0) -> torch.Tensor:
    """Each video token scores its change from the token at the same spatial cell of the previous frame (temporal
    patch): ``1 − cos(x_{f,c}, x_{f−1,c})`` — static tokens score ≈ 0, moving or changed ones high (Efficient Video
    Sampling / DyCoke's temporal merging criterion). Tokens with nothing to compare with (the first frame, a cell
    whose previous token an earlier stage dropped, image items) score ``2 + ‖x‖ / max‖x‖``: kept first, ranked by
    feature norm among themselves. ``threshold > 0``: tokens changed by at most ``threshold`` score −∞ (never kept;
    the budget is capped to what remains), so a static video keeps about one frame's tokens."""
    feats = view.features.float()
    out = torch.full(view.visual_mask.shape, -math.inf, device=feats.device)
    frame = view.frame if view.frame is not None else torch.zeros_like(view.local_index)
    cell = view.cell if view.cell is not None else torch.full_like(view.local_index, -1)
    for r, m in view.item_masks():
        idx = m.nonzero().squeeze(1)
        x = feats[r, idx]
        f, c = frame[r, idx], cell[r, idx]
        n_cells = int(c.max()) + 1 if c.numel() else 1
        key = f * n_cells + c
        order = torch.argsort(key)
        prev = (f - 1) * n_cells + c
        pos = torch.searchsorted(key[order], prev).clamp(max=idx.numel() - 1)
        found = (key[order][pos] == prev) & (f > 0) & (c >= 0)
        # the cosine as vLLM's EVS computes it (torch's own kernel), so near-ties compare the same floats
        change = 1.0 - torch.nn.functional.cosine_similarity(x, x[order[pos]], dim=-1)
        norms = x.norm(dim=-1)
        lead = 2.0 + norms / norms.max().clamp(min=1e-12)
        score = torch.where(found, change, lead)
        if threshold > 0:
            score = torch.where(found & (change <= threshold), torch.full_like(score, -math.inf), score)
        out[r, idx] = score
    return out
