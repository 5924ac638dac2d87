"""Media items: the image and video spans of a batch, found from placeholder tokens and per-item feature counts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError


@dataclass
class MediaItem:
    """One image or video of one batch row, tracked through the stages.

    ``pos``: positions of its surviving tokens in the current sequence; ``alive``: indices (into the item's original
    tokens) of its surviving tokens; ``grid``: ``(t, h, w)`` token grid when the tokens form one (``t`` frames or
    temporal patches of ``h × w``; tokens past ``t·h·w``, e.g. LLaVA-OneVision's trailing newline, belong to the last
    frame and no cell), else ``None``; ``vision``/``padding``: per original token, the vision-tower
    attention and whether it covers padded canvas, when captured.
    """

    row: int
    modality: str
    pos: torch.Tensor
    alive: torch.Tensor
    orig_len: int
    vision: torch.Tensor | None = None
    padding: torch.Tensor | None = None
    grid: tuple[int, int, int] | None = None
    flow: dict[str, torch.Tensor] | None = None  # per original token and vision layer: flowcut's statistics
    counts: torch.Tensor | None = None  # per surviving token: original tokens merged into it (proportional merge)

    @property
    def frames(self) -> int:
        """Frames (temporal patches) of a video item; 1 for an image or an item without a grid."""
        return self.grid[0] if self.grid is not None else 1

    def frame_of(self, local: torch.Tensor) -> torch.Tensor:
        """The frame index of the item's original tokens ``local`` (0 where the item has no grid)."""
        if self.grid is None:
            return torch.zeros_like(local)
        return (local // (self.grid[1] * self.grid[2])).clamp(max=self.grid[0] - 1)

    def cell_of(self, local: torch.Tensor) -> torch.Tensor:
        """The spatial index of the item's original tokens ``local`` in their frame's ``h × w`` grid (-1: none)."""
        if self.grid is None:
            return torch.full_like(local, -1)
        per_frame = self.grid[1] * self.grid[2]
        return torch.where(local < self.grid[0] * per_frame, local % per_frame, -1)


def find_items(token_ids: dict[str, int], pending: dict[str, Any], b: int, device: torch.device
               ) -> list[list[MediaItem]]:
    """Per row, its items in sequence order: each modality's placeholder positions (row-major) split into items by
    the per-item feature counts recorded from ``get_*_features``."""
    items: list[list[MediaItem]] = [[] for _ in range(b)]
    ids = pending["input_ids"]
    counts = pending["counts"]
    if not counts:
        return items
    if ids is None:
        raise InputError("input_ids: tokenprune locates visual tokens by their placeholder ids; pass input_ids "
                         "(not only inputs_embeds) together with pixel values")
    for modality, token_id in token_ids.items():
        c = counts.get(modality, [])
        rows, cols = (ids == token_id).nonzero(as_tuple=True)
        if sum(c) != rows.numel():
            raise InputError(f"input_ids: {rows.numel()} {modality} placeholder tokens but the {modality} "
                             f"features have {sum(c)} tokens ({c} per item)")
        off = 0
        extra = {key: iter(pending.get(key, {}).get(modality, [])) for key in ("vision", "padding", "grids", "flow")}
        for k in c:
            r = rows[off:off + k]
            if b > 1 and k and bool((r != r[0]).any()):
                raise InputError(f"input_ids: a {modality} item's {k} placeholder tokens span several samples")
            v, p, g, f = (next(extra[key], None) for key in ("vision", "padding", "grids", "flow"))
            if k:
                r0 = int(r[0]) if b > 1 else 0
                items[r0].append(MediaItem(r0, modality, cols[off:off + k].to(device), torch.arange(k, device=device),
                                           k, v.to(device) if v is not None else None,
                                           p.to(device) if p is not None else None, g,
                                           {n: t.to(device) for n, t in f.items() if t is not None}
                                           if f is not None else None))
            off += k
    for row in items:
        if len(row) > 1:
            row.sort(key=lambda im: int(im.pos[0]))
    return items
