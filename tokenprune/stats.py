"""What the last forward/generate() call pruned, per stage and per sample, with estimated LM prefill FLOPs."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .config import PRE_LLM
from .flops import prefill_flops


@dataclass
class StageStats:
    stage: int
    at: str | int
    visual_in: list[int]  # per sample: visual tokens entering the stage
    kept: list[int]  # per sample: visual tokens leaving it
    kept_indices: list[list[list[int]]]  # per sample, per image: original token indices kept


@dataclass
class PruneStats:
    """Per-sample statistics of the last call; ``flops_*`` are LM prefill FLOPs (see :mod:`tokenprune.flops`)."""

    stages: list[StageStats]
    prompt_tokens: list[int]  # per sample, non-padding prompt tokens before pruning
    flops_dense: list[int]
    flops_pruned: list[int]

    @property
    def flops_ratio(self) -> float:
        """Pruned / dense LM prefill FLOPs over the batch."""
        return sum(self.flops_pruned) / max(1, sum(self.flops_dense))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flops_ratio"] = self.flops_ratio
        return d

    def __str__(self) -> str:
        lines = [f"{'stage':>5} {'at':>8} {'sample':>6} {'visual in':>9} {'kept':>6}"]
        for s in self.stages:
            for b, (vi, k) in enumerate(zip(s.visual_in, s.kept)):
                lines.append(f"{s.stage:>5} {str(s.at):>8} {b:>6} {vi:>9} {k:>6}")
        lines.append(f"LM prefill FLOPs: dense {sum(self.flops_dense):.3e}, pruned {sum(self.flops_pruned):.3e} "
                     f"(ratio {self.flops_ratio:.3f})")
        return "\n".join(lines)


def build_stats(state: Any, num_layers: int, text_config: Any) -> PruneStats:
    stages = [StageStats(r.stage_index, r.at, list(r.visual_in), list(r.kept),
                         [[t.tolist() for t in row] for row in r.kept_local]) for r in state.records]
    tokens = state.dense_valid.sum(1).tolist()
    dense, pruned = [], []
    for b, n in enumerate(tokens):
        per_layer = [n] * num_layers
        for s in stages:
            start = 0 if s.at == PRE_LLM else int(s.at)
            for layer in range(start, num_layers):
                per_layer[layer] -= s.visual_in[b] - s.kept[b]
        dense.append(prefill_flops([n] * num_layers, text_config))
        pruned.append(prefill_flops(per_layer, text_config))
    return PruneStats(stages=stages, prompt_tokens=tokens, flops_dense=dense, flops_pruned=pruned)
