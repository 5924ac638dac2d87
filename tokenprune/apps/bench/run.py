"""The benchmark grid: dense vs every (preset, stage, keep) per batch size, with ideal ratios and a plot."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ...config import PruneConfig, Stage
from ...errors import InputError
from ...presets import PRESETS, preset_names
from ...results import write_json
from . import geometry
from .baseline import eager_weights_at
from .measure import Measurement, measure, time_lm

VISUAL = 576


@dataclass
class BenchSpec:
    geometry: str = "small"
    layers: int | None = None
    batches: list[int] = field(default_factory=lambda: [1, 8])
    keeps: list[int] = field(default_factory=lambda: [576, 192, 128, 64])
    stages: list[str | int] = field(default_factory=lambda: ["pre_llm", 2])
    presets: list[str] = field(default_factory=lambda: ["fastv", "uniform"])
    repeats: int = 3
    decode_steps: int = 4
    device: str = "cpu"
    baseline: bool = True  # FastV-reference-style eager peer at every in-LLM stage

    def validate(self, num_layers: int) -> None:
        for b in self.batches:
            if b < 1:
                raise InputError(f"--batch: got {b}; allowed: >= 1")
        for k in self.keeps:
            if not 1 <= k <= VISUAL:
                raise InputError(f"--keep: got {k}; allowed: 1..{VISUAL} (visual tokens per image)")
        for s in self.stages:
            if s != "pre_llm" and not (isinstance(s, int) and 0 <= s < num_layers):
                raise InputError(f"--stages: got {s!r}; allowed: pre_llm or a layer in 0..{num_layers - 1}")
        for p in self.presets:
            if p not in preset_names():
                raise InputError(f"--presets: unknown preset {p!r}; allowed: {', '.join(preset_names())}")
            if len(PRESETS[p].stages()) != 1:
                raise InputError(f"--presets: {p!r} has several stages; the grid places single-stage presets")
        if self.repeats < 1:
            raise InputError(f"--repeats: got {self.repeats}; allowed: >= 1")


def _row(m: Measurement, dense: Measurement, short_ms: float | None = None, **extra: Any) -> dict[str, Any]:
    """``short_ms``: the bare LM's time on sequences as short as this row's, from each layer on (see ``_short``)."""
    speedup = dense.lm_prefill_ms / m.lm_prefill_ms
    ideal = dense.lm_flops / m.lm_flops
    short = {} if short_ms is None else {"short_prompt_ms": short_ms,
                                         "efficiency_vs_short": short_ms / m.lm_prefill_ms}
    return {**extra, **m.to_dict(), **short, "lm_speedup": speedup, "ideal_speedup": ideal,
            "efficiency": speedup / ideal,
            "ttft_speedup": dense.ttft_ms / m.ttft_ms, "decode_ratio": m.decode_ms_per_token / dense.decode_ms_per_token,
            "kv_ratio": m.kv_cache_bytes / dense.kv_cache_bytes,
            "scoring_overhead_pct": 100.0 * m.stage_ms / dense.lm_prefill_ms}


class _Short:
    """What this hardware makes of a shorter sequence, without tokenprune: the bare LM timed on prompts of the
    dense length n and the pruned length n′ = n − visual + kept; a stage at layer K of L then costs
    K/L·T(n) + (L−K)/L·T(n′). ``efficiency_vs_short`` near 1 with ``efficiency`` below 1 means the gap to the FLOP
    ideal is the hardware's lower throughput on short sequences, not pruning overhead."""

    def __init__(self, model: Any, batch: int, n: int, layers: int, repeats: int) -> None:
        self.model, self.batch, self.n, self.layers, self.repeats = model, batch, n, layers, repeats
        self._ms: dict[int, float] = {}

    def _t(self, n: int) -> float:
        if n not in self._ms:
            self._ms[n] = time_lm(self.model, self.batch, n, self.repeats)
        return self._ms[n]

    def __call__(self, stage: str | int | None, keep: int) -> float:
        k = 0 if stage in (None, "pre_llm") else int(stage)
        k = self.layers if keep == VISUAL else k
        return (k * self._t(self.n) + (self.layers - k) * self._t(self.n - VISUAL + keep)) / self.layers


def run(spec: BenchSpec, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs the grid; every row is one configuration measured in the same process as its dense reference."""
    model, g = geometry.build(spec.geometry, spec.layers, device=spec.device)
    n_layers = model.config.get_text_config().num_hidden_layers
    spec.validate(n_layers)
    rows = []
    for b in spec.batches:
        inputs = geometry.inputs(model, g, b, device=spec.device)
        kw = dict(repeats=spec.repeats, decode_steps=spec.decode_steps)
        dense = measure(model, inputs, None, "dense", **kw)
        short = _Short(model, b, int(inputs["attention_mask"][0].sum()), n_layers, spec.repeats)
        rows.append(_row(dense, dense, short(None, VISUAL), preset="dense", stage=None, keep=VISUAL))
        for stage in spec.stages:
            keep_all = PruneConfig.from_preset(spec.presets[0], keep=1.0, at=stage)
            rows.append(_row(measure(model, inputs, keep_all, "keep-all", **kw), dense, short(stage, VISUAL),
                             preset="keep-all", stage=stage, keep=VISUAL))
            for preset in spec.presets:
                for keep in spec.keeps:
                    if keep == VISUAL:
                        continue
                    cfg = PruneConfig.from_preset(preset, keep=keep, at=stage)
                    m = measure(model, inputs, cfg, preset, **kw)
                    if m.visual_tokens != keep:
                        raise RuntimeError(f"{preset} at {stage}: kept {m.visual_tokens} tokens, asked {keep}")
                    rows.append(_row(m, dense, short(stage, keep), preset=preset, stage=stage, keep=keep))
                    if progress:
                        progress(f"batch {b} {preset} @{stage} keep {keep}")
            if spec.baseline and isinstance(stage, int) and stage >= 1:
                for keep in [k for k in spec.keeps if k != VISUAL]:
                    with eager_weights_at(model, stage - 1):  # registers its scorer while it is held
                        cfg = PruneConfig([Stage(stage, keep=keep, scorer="_eager_previous_layer")])
                        m = measure(model, inputs, cfg, "fastv-eager", **kw)
                    rows.append(_row(m, dense, short(stage, keep), preset="fastv-eager (peer)", stage=stage,
                                     keep=keep))
    return {"geometry": g.name, "note": g.note, "layers": n_layers, "device": spec.device, "spec": spec.__dict__,
            "rows": rows}


def save(result: dict[str, Any], path: str) -> None:
    write_json(path, result, indent=2)


def plot(result: dict[str, Any], path: str) -> bool:
    """Speedup of LM prefill vs kept tokens per (preset, stage, batch), with the ideal (FLOP-ratio) curve."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r for r in result["rows"] if r["preset"] not in ("dense", "keep-all")]
    for key in sorted({(r["preset"], str(r["stage"]), r["batch"]) for r in rows}):
        sel = sorted((r for r in rows if (r["preset"], str(r["stage"]), r["batch"]) == key), key=lambda r: r["keep"])
        ax.plot([r["keep"] for r in sel], [r["lm_speedup"] for r in sel], marker="o", label=f"{key[0]} @{key[1]} b{key[2]}")
        ax.plot([r["keep"] for r in sel], [r["ideal_speedup"] for r in sel], ls=":", color="gray")
    ax.set_xlabel("visual tokens kept (of 576)")
    ax.set_ylabel("LM prefill speedup vs dense")
    ax.set_title(f"{result['geometry']} ({result['layers']} layers, {result['device']}); dotted: ideal (FLOP ratio)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
