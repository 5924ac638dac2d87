"""Pure tensor helpers that turn a per-token keep mask into a re-padded, shorter batch."""
from __future__ import annotations

import torch


def is_left_padded(valid: torch.Tensor) -> bool:
    """Right padding iff some row ends with padding and every row starts with a real token; else left.

    Unpadded batches count as left-padded so that, after pruning makes rows uneven, every row's last token stays last.
    """
    right = bool((~valid[:, -1]).any()) and bool(valid[:, 0].all())
    return not right


def compaction_index(keep: torch.Tensor, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``keep [B, n] bool`` -> ``(index [B, L], valid [B, L])`` with ``L = max_b keep[b].sum()``.

    ``index[b]`` lists the kept positions of row ``b`` in original order, padded on the ``left`` or right; padding
    slots point at a kept position of the same row (any real token, masked out by ``valid``).
    """
    if keep.shape[0] == 1:  # one row: no padding
        index = keep[0].nonzero().T
        return index, torch.ones(index.shape, dtype=torch.bool, device=keep.device)
    counts = keep.sum(1)
    length = int(counts.max()) if keep.numel() else 0
    # stable sort brings kept positions to the front in their original order
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :length]
    slots = torch.arange(length, device=keep.device).expand(keep.shape[0], -1)
    if left:
        src = slots - (length - counts).unsqueeze(1)
        valid = src >= 0
        index = torch.gather(order, 1, src.clamp(min=0))
    else:
        valid = slots < counts.unsqueeze(1)
        index = order
    return index, valid


def gather_tokens(x: torch.Tensor, index: torch.Tensor, seq_dim: int) -> torch.Tensor:
    """Gathers ``x`` along ``seq_dim`` with a per-row ``index [B, L]``; the batch dim is the one before ``seq_dim``.

    Works for hidden states ``[B, n, D]`` (seq_dim=1), rotary tables ``[B, n, d]`` and M-RoPE position ids
    ``[R, B, n]`` (seq_dim=-1). A broadcast batch dim of size 1 is expanded first.
    """
    seq_dim = seq_dim % x.dim()
    bdim = seq_dim - 1
    if index.shape[0] == 1 and x.shape[bdim] == 1:  # one row: a plain index_select (gather is ~10x slower)
        return x.index_select(seq_dim, index[0])
    if bdim == 0:
        return take_rows(x, index)
    shape = list(x.shape)
    shape[bdim] = index.shape[0]
    x = x.expand(*shape)
    view = [1] * x.dim()
    view[bdim], view[seq_dim] = index.shape
    idx = index.view(view)
    expand = list(x.shape)
    expand[seq_dim] = index.shape[1]
    return torch.gather(x, seq_dim, idx.expand(*expand))


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B, n, ...]`` (or ``[1, n, ...]``, broadcast over rows), ``index [B, L]`` -> ``[B, L, ...]`` with
    ``out[b, l] = x[b, index[b, l]]``: one ``index_select`` over the flattened rows."""
    b, length = index.shape
    if x.shape[0] not in (1, b):
        raise ValueError(f"take_rows: x has {x.shape[0]} rows, index {b}")
    if x.shape[0] == 1:
        return x[0].index_select(0, index.reshape(-1)).view(b, length, *x.shape[2:])
    flat = index + torch.arange(b, device=index.device)[:, None] * x.shape[1]
    return x.reshape(b * x.shape[1], *x.shape[2:]).index_select(0, flat.reshape(-1)).view(b, length, *x.shape[2:])


def inverse_index(index: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, n]`` map from old positions to new ones (``-1`` where dropped)."""
    inv = torch.full((index.shape[0], n), -1, dtype=torch.long, device=index.device)
    if index.shape[0] == 1 and bool(valid.all()):
        inv[0].index_copy_(0, index[0], torch.arange(index.shape[1], device=index.device))
        return inv
    rows, cols = valid.nonzero(as_tuple=True)
    inv[rows, index[rows, cols]] = cols
    return inv


def kept_positions(index: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, n]`` bool: which old positions survive a compaction ``(index, valid)``."""
    kept = torch.zeros(index.shape[0], n, dtype=torch.bool, device=index.device)
    rows, cols = valid.nonzero(as_tuple=True)
    kept[rows, index[rows, cols]] = True
    return kept
