"""Original 1-D positions for LLaVA's kept image tokens under vLLM (no vLLM import; pure tensor bookkeeping).

vLLM numbers a prompt's 1-D positions contiguously, so a pruned image of K placeholders would shift every later
token by (n − K) and the kept tokens would lose their place in the image. The plugin therefore runs LLaVA on vLLM's
multi-channel position path (the one M-RoPE models use; all channels equal here): at admission every text token gets
its dense position and each image's placeholders a provisional run from the image's dense start; once the image's
rows are chosen, each kept row carries its index in the image (and the image's kept count, which a request's budget
may set) and the placeholders it fills get
``image start + index`` — as tokenprune's Hugging Face path and the unpruned model place them.
"""
from __future__ import annotations

import torch

from ...errors import InternalError

#: the kept token's index and its image's kept count travel as four extra channels (value // BASE, value % BASE
#: each), exact even in bfloat16
BASE = 128


def index_channels(index: torch.Tensor, kept: int, dtype: torch.dtype) -> torch.Tensor:
    """``[n, 4]`` columns to append to the kept rows of an image with ``kept`` placeholders."""
    k = torch.full_like(index, kept)
    return torch.stack([index // BASE, index % BASE, k // BASE, k % BASE], 1).to(dtype)


def split_index(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The embedding rows without the four extra columns, the kept indices and each row's image kept count."""
    ch = rows[:, -4:].float().round().long()
    return rows[:, :-4], ch[:, 0] * BASE + ch[:, 1], ch[:, 2] * BASE + ch[:, 3]


def admission_positions(num_tokens: int, images: list[tuple[int, int]], dense_len: int) -> tuple[torch.Tensor, int]:
    """Positions ``[3, num_tokens]`` (all channels equal) of a prompt whose images ``(offset, placeholders)`` each
    stand for ``dense_len`` tokens, and the position delta of the tokens generated after it: text at its dense
    position, placeholders a provisional run from their image's dense start — ``mrope_admission_positions`` with
    each image a ``dense_len × 1 × 1`` run."""
    pos, delta = mrope_admission_positions(num_tokens, [(o, n, dense_len, 1, 1, 1.0) for o, n in images])
    return pos[0].expand(3, -1).clone(), delta


def kept_positions(input_ids: torch.Tensor, image_token_id: int, index: torch.Tensor, positions: torch.Tensor,
                   num_computed: int, kept: int, dense_len: int) -> torch.Tensor:
    """``positions`` with the placeholders filled now (the first ``len(index)`` not yet computed, in order — what vLLM
    passes under chunked prefill and prefix caching) set to their image's dense start plus the kept token's index."""
    slots = (input_ids.to(positions.device) == image_token_id).nonzero().squeeze(1)
    if slots.numel() % kept:
        raise InternalError(f"{slots.numel()} image placeholders is not a multiple of {kept} per image")
    first = int((slots < num_computed).sum())
    which = torch.arange(first, first + index.numel(), device=slots.device)
    if index.numel() and int(which[-1]) >= slots.numel():
        raise InternalError(f"{index.numel()} image rows for {slots.numel() - first} open placeholders")
    image = which // kept
    start = slots[image * kept] + image * (dense_len - kept)  # dense position of the image's first token
    out = positions.clone()
    out[:, slots[which]] = (start + index.to(slots.device)).to(out.dtype)
    return out


def mrope_admission_positions(num_tokens: int, items: list[tuple[int, int, int, int, int, float]]
                              ) -> tuple[torch.Tensor, int]:
    """M-RoPE positions ``[3, num_tokens]`` of a prompt whose media items ``(offset, placeholders, t, h, w,
    t_factor)`` may hold fewer placeholders than their grid: text at its dense position (after an item, at the item's
    start + its span), an item's placeholders at the first grid positions (exact for unpruned media, provisional for
    pruned images until their rows are chosen), and the delta of the generated tokens."""
    chunks, st, nxt = [], 0, 0
    for offset, length, t, h, w, t_factor in sorted(items):
        text = offset - st
        chunks.append(torch.arange(text).expand(3, -1) + nxt)
        grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"))
        grid = grid.reshape(3, -1)
        if t_factor != 1.0:
            grid[0] = (grid[0] * t_factor).long()
        if length > grid.shape[1]:
            raise InternalError(f"a media item has {length} placeholders but {grid.shape[1]} tokens")
        chunks.append(grid[:, :length] + nxt + text)
        nxt += text + int(grid.max()) + 1
        st = offset + length
    chunks.append(torch.arange(num_tokens - st).expand(3, -1) + nxt)
    return torch.cat(chunks, 1), nxt + (num_tokens - st) - num_tokens


def recompute_media_positions(input_ids: torch.Tensor, rows: list[torch.Tensor], positions: torch.Tensor,
                              num_computed: int, media_ids: tuple[int, ...]) -> tuple[torch.Tensor, int]:
    """M-RoPE positions ``[3, N]`` with the media placeholders filled by this step's rows set to their item's start
    plus each row's relative ``(t, h, w)`` (the first three of the four channels the model appends); returns them and
    the delta of the generated tokens.

    The rows of a step fill the first placeholders not yet computed, in order (what vLLM passes under chunked prefill
    and prefix caching, a partial item included). An item starts one past the token before its placeholders (its
    vision-start token, placed by the admission positions and never moved), so no step needs to have seen that token
    — unlike vLLM's EVS update, which fails when the computed prefix ends right after it."""
    ids = input_ids.to(positions.device)
    is_media = torch.zeros_like(ids, dtype=torch.bool)
    for m in media_ids:
        is_media |= ids == m
    slots = is_media.nonzero().squeeze(1)
    total = sum(int(r.shape[0]) for r in rows)
    out = positions.clone()
    if total:
        first = int((slots < num_computed).sum())
        if first + total > slots.numel():
            raise InternalError(f"{total} media rows for {slots.numel() - first} open placeholders")
        which = slots[first:first + total]
        starts = torch.ones_like(is_media)
        starts[1:] = ~is_media[:-1] | (ids[1:] != ids[:-1])  # a placeholder run (one item) starts here
        run_start = torch.cummax(torch.where(starts & is_media, torch.arange(ids.numel(), device=ids.device), 0),
                                 0).values[which]
        base = torch.where(run_start > 0, positions[0, (run_start - 1).clamp(min=0)] + 1, 0)
        rel = torch.cat(rows).to(positions.device)[:, :3].round().long()
        out[:, which] = (base[:, None] + rel).T.to(out.dtype)
    n = ids.numel()
    return out, int(out.max()) + 1 - n if n else 0
