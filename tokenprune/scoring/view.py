"""TokenView: what a pruning stage can see, handed to scorers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ..errors import InternalError
from ..runtime.compact import take_rows


class Deferred:
    """A view field computed on first read (``fn()``), for per-token tensors most scorers never look at."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], torch.Tensor | None]) -> None:
        self.fn = fn


_REQUIRED = object()  # a _Field without a default


class _Field:
    """Dataclass field descriptor: stores the value, resolving a :class:`Deferred` once on first read."""

    def __init__(self, default: object = _REQUIRED) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_v_" + name

    def __get__(self, obj: object, owner: type) -> object:
        if obj is None:
            if self.default is _REQUIRED:
                raise AttributeError(self.slot)  # tells dataclass the field has no default
            return self.default
        value = obj.__dict__[self.slot]
        if isinstance(value, Deferred):
            value = obj.__dict__[self.slot] = value.fn()
        return value

    def __set__(self, obj: object, value: object) -> None:
        obj.__dict__[self.slot] = value


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

    # (the per-token fields below also take a Deferred: built on first read, so a scorer pays only for what it reads)
    hidden: torch.Tensor
    visual_index: torch.Tensor
    visual_mask: torch.Tensor = _Field()  # type: ignore[assignment]
    item_id: torch.Tensor = _Field()  # type: ignore[assignment]
    local_index: torch.Tensor = _Field()  # type: ignore[assignment]
    item_len: torch.Tensor = _Field()  # type: ignore[assignment]
    budget: torch.Tensor = _Field()  # type: ignore[assignment]
    valid: torch.Tensor
    layer: int | None
    generator: torch.Generator
    frame: torch.Tensor | None = _Field(None)  # type: ignore[assignment]
    cell: torch.Tensor | None = _Field(None)  # type: ignore[assignment]
    grid_hw: torch.Tensor | None = _Field(None)  # type: ignore[assignment]  # [B, V, 2] item grid rows, cols (0, 0: none)
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
