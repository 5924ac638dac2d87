"""TokenView: what a pruning stage can see, handed to scorers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ..errors import InternalError
from ..runtime.compact import take_rows


@dataclass
class TokenView:
    """Visual tokens of a batch at one stage.

    ``hidden``: ``[B, n, D]`` the stage's input sequence (projector-merged embeddings at ``pre_llm``, the hidden
    states entering layer ``K`` otherwise). ``visual_index``/``visual_mask``: ``[B, V]`` positions of visual tokens in
    that sequence (rows padded; ``visual_mask`` marks real entries). ``item_id``: ``[B, V]`` which media item (image or
    video) of the row a token belongs to; ``local_index``/``item_len``/``budget``: a token's index inside its item,
    the item's current token count and its keep budget. ``valid``: ``[B, n]`` non-padding tokens. ``layer``: the LM
    layer (``None`` for pre_llm). ``generator``: seeded RNG for stochastic scorers. ``frame``/``cell``: ``[B, V]`` a
    token's frame (temporal patch) in its item and its spatial index in that frame's ``h × w`` grid (``cell = -1``
    where the item's tokens form no grid, e.g. anyres crops with newline tokens).
    """

    hidden: torch.Tensor
    visual_index: torch.Tensor
    visual_mask: torch.Tensor
    item_id: torch.Tensor
    local_index: torch.Tensor
    item_len: torch.Tensor
    budget: torch.Tensor
    valid: torch.Tensor
    layer: int | None
    generator: torch.Generator
    frame: torch.Tensor | None = None
    cell: torch.Tensor | None = None
    grid_hw: torch.Tensor | None = None  # [B, V, 2] rows and columns of the token's item grid (0, 0: no grid)
    _attention_fn: Callable[[str, str], torch.Tensor] | None = None
    _vision_attention: torch.Tensor | None = None
    _padding: torch.Tensor | None = None
    _flow: dict = field(default_factory=dict)  # (row, item) -> flowcut's per-layer statistics of its live tokens
    _cache: dict = field(default_factory=dict)

    @property
    def features(self) -> torch.Tensor:
        """``[B, V, D]`` visual features at this stage."""
        if "features" not in self._cache:
            self._cache["features"] = take_rows(self.hidden, self.visual_index)
        return self._cache["features"]

    @property
    def text_mask(self) -> torch.Tensor:
        """``[B, n]`` valid tokens that are not visual."""
        vis = torch.zeros_like(self.valid)
        vis.scatter_(1, self.visual_index, self.visual_mask)
        return self.valid & ~vis

    # the names of the image-only API (kept for scorers written against it)
    image_id = property(lambda self: self.item_id)
    image_len = property(lambda self: self.item_len)

    def image_masks(self) -> Iterator[tuple[int, torch.Tensor]]:
        return self.item_masks()

    def item_masks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """``(row, mask [V])`` for every image/video item of the batch, its tokens marked in ``visual_index``."""
        for r in range(self.visual_mask.shape[0]):
            for j in self.item_id[r][self.visual_mask[r]].unique().tolist():
                yield r, self.visual_mask[r] & (self.item_id[r] == j)

    def attention(self, query: str = "last", keys: str = "all") -> torch.Tensor:
        """``[B, V]`` text->visual attention at this stage's layer (mean over heads and query tokens); ``keys``:
        the softmax over every key the query sees (``"all"``) or over the visual keys only (``"visual"``).

        Computed from the layer's own q/k projections and rotary embedding, so SDPA/FlashAttention stay on.
        """
        key = f"attention:{query}:{keys}"
        if key not in self._cache:
            if self._attention_fn is None:
                raise InternalError("attention is not available at this stage: the scorer must declare "
                                    "captures={'lm_attention'} in its spec")
            self._cache[key] = self._attention_fn(query, keys)
        return self._cache[key]

    def vision_attention(self) -> torch.Tensor:
        """``[B, V]`` the vision tower's [CLS]->patch attention for each visual token (see ``cls_attention``)."""
        if self._vision_attention is None:
            raise InternalError("vision-tower attention was not captured for this call: the scorer must "
                                "declare captures={'vision_attention'} in its spec")
        return self._vision_attention

    def vision_flow(self, row: int, item: int) -> dict[str, torch.Tensor]:
        """Item ``item`` of row ``row``: the vision tower's per-layer statistics of its tokens, in this view's token
        order (``rel``, ``vnorm`` and, where the tower has a [CLS], ``sem``: ``[L, tokens]``; see ``flowcut``)."""
        if (row, item) not in self._flow:
            raise InternalError("the vision tower's information flow was not captured for this call: the scorer "
                                "must declare captures={'vision_flow'} in its spec")
        return self._flow[(row, item)]

    @property
    def padding_mask(self) -> torch.Tensor | None:
        """``[B, V]`` tokens that cover padded canvas (e.g. LLaVA's expand-to-square), when the adapter can tell."""
        return self._padding
