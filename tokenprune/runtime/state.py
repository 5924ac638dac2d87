"""Per-call pruning state: what was kept where, the compacted segments, and decode bookkeeping."""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from .items import MediaItem


@dataclass
class Segment:
    """Layers ``start_layer..`` (until the next segment) see a compacted sequence.

    ``valid``: ``[B, L]`` padding mask of the compacted prompt; ``dense_idx``: ``[B, L]`` positions of its tokens in
    the original prompt. ``via_lm``: the compaction happened before layer 0 (pre_llm), so the language model builds
    its masks itself from the compacted 2-D mask; otherwise each layer of the segment gets its mask substituted.
    """

    start_layer: int
    valid: torch.Tensor
    dense_idx: torch.Tensor
    via_lm: bool
    idx_local: torch.Tensor | None = None  # [B, L] positions in the previous segment's sequence
    prefill_kwargs: dict[str, Any] = field(default_factory=dict)
    key_bias: torch.Tensor | None = None  # [B, L] log(count) of merged keys (proportional attention), else None
    bias_masks: dict = field(default_factory=dict)  # prefill masks with the key bias, per layer type (pre_llm)
    unpadded: bool = False  # every row of the compacted prompt is all real tokens (valid is all True)


@dataclass
class StageRecord:
    stage_index: int
    at: str | int
    visual_in: list[int]
    kept: list[int]
    kept_local: list[list[torch.Tensor]]  # per row, per image: original token indices kept after this stage


@dataclass
class CallState:
    """Everything one forward/generate() call needs; discarded at the next prefill."""

    batch: int
    dense_len: int
    dense_valid: torch.Tensor
    left_pad: bool
    images: list[list[MediaItem]]
    unpadded: bool = False  # the dense prompt has no padding (dense_valid is all True)
    cache_ref: Any = None
    segments: list[Segment] = field(default_factory=list)
    records: list[StageRecord] = field(default_factory=list)
    phase: str = "prefill"
    dense_seen: int = 0
    step_tail: torch.Tensor | None = None
    step_masks: dict = field(default_factory=dict)
    current: Segment | None = None
    previous_layer: tuple | None = None  # (index, input hidden, rotary tables) of the layer before a stage
    stats: Any = None  # the PruneStats built from this call (handle.stats), once asked for

    def bind_cache(self, cache: Any) -> None:
        self.cache_ref = weakref.ref(cache) if cache is not None else None

    def owns(self, cache: Any) -> bool:
        return self.cache_ref is not None and self.cache_ref() is cache

    @property
    def last(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    def segment_for_layer(self, layer: int) -> Segment | None:
        seg = None
        for s in self.segments:
            if s.start_layer <= layer:
                seg = s
        return seg

    def current_valid(self) -> torch.Tensor:
        return self.last.valid if self.last is not None else self.dense_valid


class CallContext(threading.local):
    """What a runtime knows about the call in flight, one per thread: the pending prefill inputs, the current
    :class:`CallState`, the generate() session (selections frozen for no-cache recomputation), the captured vision
    block input, and whether hooks are bypassed (the auto-layer's dense pass)."""

    pending: dict[str, Any] | None = None
    state: CallState | None = None
    session: dict[int, Any] | None = None
    vision_block_input: tuple[torch.Tensor, dict] | None = None
    projections: dict[str, torch.Tensor] | None = None  # vision projection outputs of the features call in flight
    flow_blocks: list | None = None  # per vision block, what the adapter's flow_block() kept (flowcut)
    flow_grid: Any = None  # the grid_thw of the features call in progress (Qwen towers: item boundaries)
    bypass: bool = False
    in_features: bool = False
