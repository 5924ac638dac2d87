"""Text->visual attention at one LM layer, computed from the layer's own q/k (SDPA/FlashAttention stay on)."""
from __future__ import annotations

from typing import Any

import torch

from ..scoring.view import TokenView
from .compact import compaction_index


def last_valid(valid: torch.Tensor) -> torch.Tensor:
    """``[B]`` index of each row's last valid token."""
    n = valid.shape[1]
    return (torch.arange(n, device=valid.device) * valid).argmax(1)


def layer_attention(adapter: Any, cache: Any, layer: int, cos_sin: tuple[torch.Tensor, torch.Tensor],
                    hidden: torch.Tensor, view: TokenView, query: str, keys: str = "all") -> torch.Tensor:
    """``[B, V]`` attention of ``layer`` (whose input was ``hidden``) from the chosen queries to the visual tokens,
    mean over heads and queries. Keys come from that layer's KV cache when it holds exactly this sequence (no
    recomputation). ``query="last"``: the last valid token; ``"text"``: every text token that can see the key.
    ``keys="visual"``: each head's softmax runs over the visual keys only (every head then weighs the image
    equally, whatever it pays to text or sink tokens); ``"all"``: over every key the query sees."""
    valid = view.valid
    b, n = valid.shape
    if query == "last":
        q_index, q_ok = last_valid(valid)[:, None], torch.ones(b, 1, dtype=torch.bool, device=valid.device)
    elif query == "prior":  # the text after the row's last visual token (AdaptInfer)
        last = torch.where(view.visual_mask, view.visual_index, torch.full_like(view.visual_index, -1)).amax(1)
        after = view.text_mask & (torch.arange(n, device=valid.device)[None] > last[:, None])
        q_index, q_ok = compaction_index(after, left=False)
    else:
        q_index, q_ok = compaction_index(view.text_mask, left=False)
    cached = None
    cache_layers = getattr(cache, "layers", None)
    if cache_layers is not None and layer < len(cache_layers):
        k = getattr(cache_layers[layer], "keys", None)
        if isinstance(k, torch.Tensor) and k.shape[0] == b and k.shape[-2] == n:
            cached = k
    with torch.no_grad():
        q, k = adapter.query_key(layer, hidden, q_index, *cos_sin, keys=cached)
        logits = torch.matmul(q.float(), k.float().transpose(-1, -2))  # [B, H, Q, n]
        positions = torch.arange(n, device=valid.device)
        allowed = valid[:, None, :] & (positions[None, None, :] <= q_index[:, :, None])  # [B, Q, n]
        allowed = allowed & q_ok[:, :, None]  # padded query slots (rows with fewer text tokens) see nothing
        if keys == "visual":
            is_vis = torch.zeros(b, n + 1, dtype=torch.bool, device=valid.device)  # column n: padded visual slots
            is_vis.scatter_(1, torch.where(view.visual_mask, view.visual_index, n), True)
            allowed = allowed & is_vis[:, None, :n]
        allowed[..., 0] |= ~allowed.any(-1)  # ... and get a dummy key, so their softmax is finite (then unused)
        probs = logits.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)  # [B, H, Q, n]
        if query == "prior":
            return text_prior_scores(probs, q_index, q_ok, view.visual_index)
        probs = probs.mean(1)  # [B, Q, n]
        vis = torch.gather(probs, 2, view.visual_index[:, None, :].expand(-1, probs.shape[1], -1))
        see = (view.visual_index[:, None, :] < q_index[:, :, None]) & q_ok[:, :, None]
        return torch.where(see, vis, 0.0).sum(1) / see.sum(1).clamp(min=1)


def text_prior_scores(probs: torch.Tensor, q_index: torch.Tensor, q_ok: torch.Tensor,
                      visual_index: torch.Tensor) -> torch.Tensor:
    """AdaptInfer's text-prior-weighted attention: ``probs [B, H, Q, n]`` per-head attention of the text queries at
    ``q_index`` (``[B, Q]``, real where ``q_ok``). Per head, text token ``j``'s prior is the attention it receives
    from the text plus the attention it pays to the text, minus its self-attention (``w = Σ_i A_ij + Σ_i A_ji −
    A_jj``); a visual token scores ``Σ_h Σ_j w_hj · A_h[j, v]``."""
    heads, q = probs.shape[1], q_index.shape[1]
    ok = q_ok[:, None, :].float()  # [B, 1, Q]
    tt = torch.gather(probs, 3, q_index[:, None, None, :].expand(-1, heads, q, -1))  # [B, H, Q(i), Q(j)]
    tt = tt * ok[..., None] * ok[:, :, None, :]
    prior = (tt.sum(2) + tt.sum(3) - tt.diagonal(dim1=2, dim2=3)) * ok  # [B, H, Q]
    vis = torch.gather(probs, 3, visual_index[:, None, None, :].expand(-1, heads, q, -1))  # [B, H, Q, V]
    return (prior[..., None] * vis).sum((1, 2))
