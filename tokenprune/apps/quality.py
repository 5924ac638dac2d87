"""``tokenprune eval``: accuracy of pruning presets × budgets on a ShapesVQA split, against the dense model.

For each preset and budget (visual tokens kept per image or clip: a count, or a fraction below 1) the model answers every question of the split's first
``limit`` examples (greedy argmax at the answer position, batches left-padded); accuracy overall and per question
kind, retention = pruned accuracy / dense accuracy, forward time per sample (vision tower + LM prefill) and the
analytic LM FLOP ratio. Multi-stage presets (``pyramiddrop``) are scaled so their last stage keeps the budget.
Results go to JSON (written under a ``.partial`` name and renamed only when complete) and CSV, with two Pareto plots.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import PruneConfig
from ..presets import PRESETS
from ..errors import InputError
from ..results import write_json
from ..timing import time_ms

VISUAL = 576  # the LLaVA ShapesVQA model's tokens per image (the Qwen one has 126–160 per image, 324 per clip)


@dataclass
class Sweep:
    model: str = "embedded"
    presets: list[str] = field(default_factory=lambda: ["fastv", "divprune"])
    keeps: list[int | float] = field(default_factory=lambda: [288, 192, 144, 64, 32])
    split: str = "test"
    limit: int = 200
    batch: int = 16
    layer: int | None = None  # overrides the layer of single-stage in-LLM presets

    def validate(self) -> None:
        from ..shapesvqa.clip_data import CLIP_SPLITS
        from ..shapesvqa.data import SPLITS

        if self.split not in SPLITS and self.split not in CLIP_SPLITS:
            raise InputError(f"--split: got {self.split!r}; allowed: {', '.join([*SPLITS, *CLIP_SPLITS])}")
        if self.limit < 1:
            raise InputError(f"--limit: got {self.limit}; the split would be empty (allowed: >= 1)")
        if self.batch < 1:
            raise InputError(f"--batch: got {self.batch}; allowed: >= 1")
        bad = [k for k in self.keeps if not (isinstance(k, int) and k >= 1 or isinstance(k, float) and 0 < k < 1)]
        if bad or not self.keeps:
            raise InputError(f"--keep: got {bad or self.keeps}; allowed: visual tokens kept per item (>= 1) or a "
                             "fraction in (0, 1)")
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown or not self.presets:
            raise InputError(f"--presets: unknown {unknown or self.presets}; allowed: {', '.join(sorted(PRESETS))}")


def preset_config(name: str, keep: int, num_layers: int, layer: int | None = None) -> PruneConfig:
    """Preset ``name`` whose (last) stage keeps ``keep`` tokens per image (the preset scales its own schedule);
    ``layer`` moves a single in-LLM stage."""
    kw: dict[str, Any] = {"layer": layer} if layer is not None and PRESETS[name].single_layer_stage else {}
    return PruneConfig.from_preset(name, num_layers=num_layers, keep=keep, **kw)


def answers(model: Any, inputs: list[dict[str, torch.Tensor]], vocab: list[str]) -> tuple[list[str], float]:
    preds: list[str] = []
    total = 0.0
    for x in inputs:
        out: dict[str, torch.Tensor] = {}

        def fwd(x=x, out=out):
            out["logits"] = model(**x).logits[:, -1]

        total += time_ms(fwd)
        preds += [vocab[i] for i in out["logits"].argmax(-1).tolist()]
    return preds, total


def prepare(processor: Any, split: str, limit: int, batch: int) -> tuple[list, list[dict[str, torch.Tensor]]]:
    """The split's first ``limit`` examples (images, or clips for ``clips-*``) and their processor inputs,
    ``batch`` per left-padded batch."""
    from ..shapesvqa.embedded import batch_inputs, split_examples

    exs = split_examples(processor, split, limit)
    return exs, [batch_inputs(processor, exs[i:i + batch]) for i in range(0, len(exs), batch)]


def accuracy(model: Any, processor: Any, exs: list, inputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Accuracy overall, per question kind and per question type, plus forward ms per sample."""
    vocab = processor.tokenizer.convert_ids_to_tokens(list(range(model.config.text_config.vocab_size)))
    with torch.no_grad():
        preds, ms = answers(model, inputs, vocab)
    res = {"accuracy": sum(p == e.qa.answer for p, e in zip(preds, exs)) / len(exs)}
    for k in sorted({e.qa.kind for e in exs}):
        idx = [i for i, e in enumerate(exs) if e.qa.kind == k]
        res[k] = sum(preds[i] == exs[i].qa.answer for i in idx) / len(idx)
    res["ms_per_sample"] = ms / len(exs)
    by_type: dict[str, list[bool]] = {}
    for p, e in zip(preds, exs):
        by_type.setdefault(e.qa.type, []).append(p == e.qa.answer)
    res["by_type"] = {t: {"accuracy": sum(v) / len(v), "n": len(v)} for t, v in sorted(by_type.items())}
    return res


def run_sweep(sw: Sweep, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from ..api import pruned
    from ..shapesvqa.embedded import load, visual_tokens

    sw.validate()
    model, processor = load(sw.model)
    exs, inputs = prepare(processor, sw.split, sw.limit, sw.batch)
    visual = visual_tokens(model, inputs)
    too_many = [k for k in sw.keeps if isinstance(k, int) and k > visual]
    if too_many:
        raise InputError(f"--keep: got {too_many}; this model has {visual:g} visual tokens per item on {sw.split!r}")
    num_layers = model.config.text_config.num_hidden_layers
    with torch.no_grad():
        model(**inputs[0])  # warm-up
    if progress:
        progress("dense")
    dense = accuracy(model, processor, exs, inputs)
    rows = []
    for name in sw.presets:
        for keep in sw.keeps:
            cfg = preset_config(name, keep, num_layers, sw.layer)
            if progress:
                progress(f"{name} keep={keep}")
            with pruned(model, cfg) as h:
                r = accuracy(model, processor, exs, inputs)
                flops = h.stats.flops_ratio
            rows.append({"preset": name, "keep": keep, "stages": [s.to_dict() for s in cfg.stages], **r,
                         "retention": r["accuracy"] / dense["accuracy"] if dense["accuracy"] else float("nan"),
                         "speedup": dense["ms_per_sample"] / r["ms_per_sample"], "flops_ratio": flops})
    return {"model": sw.model, "split": sw.split, "limit": len(exs), "visual_tokens": visual, "dense": dense,
            "rows": rows, "complete": True}


def save(result: dict[str, Any], out: str) -> list[str]:
    """Writes ``out`` (JSON, atomically), the CSV next to it and the two plots; returns the paths written."""
    write_json(out, result)
    stem = os.path.splitext(out)[0]
    written = [out, stem + ".csv"]
    kinds = question_kinds(result)
    with open(stem + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["preset", "keep", "accuracy", *kinds, "retention", "ms_per_sample", "speedup", "flops_ratio"])
        d = result["dense"]
        w.writerow(["dense", result.get("visual_tokens", VISUAL), d["accuracy"], *[d.get(k) for k in kinds], 1.0,
                    d["ms_per_sample"], 1.0, 1.0])
        for r in result["rows"]:
            w.writerow([r["preset"], r["keep"], r["accuracy"], *[r.get(k) for k in kinds], r["retention"],
                        r["ms_per_sample"], r["speedup"], r["flops_ratio"]])
    written += plot(result, stem)
    return written


def question_kinds(result: dict[str, Any]) -> list[str]:
    """The question kinds a result reports (images: localized, global; clips: temporal, localized, global)."""
    return [k for k in ("temporal", "localized", "global") if k in result["dense"]]


def kept_tokens(result: dict[str, Any], keep: int | float) -> float:
    """A budget in tokens per item (fractions scaled by the mean visual tokens per item)."""
    return keep if isinstance(keep, int) else keep * result.get("visual_tokens", VISUAL)


def plot(result: dict[str, Any], stem: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    for x_key, xlabel, suffix in [("keep", "visual tokens kept per item", "_acc_vs_tokens.png"),
                                  ("ms_per_sample", "forward ms per sample (vision + LM prefill)", "_acc_vs_ms.png")]:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        d = result["dense"]
        ax.scatter([result.get("visual_tokens", VISUAL) if x_key == "keep" else d["ms_per_sample"]], [d["accuracy"]], c="k", marker="*", s=120,
                   label="dense", zorder=3)
        for name in dict.fromkeys(r["preset"] for r in result["rows"]):
            x_of = (lambda r: kept_tokens(result, r["keep"])) if x_key == "keep" else (lambda r: r[x_key])
            rs = sorted((r for r in result["rows"] if r["preset"] == name), key=x_of)
            ax.plot([x_of(r) for r in rs], [r["accuracy"] for r in rs], marker="o", label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"accuracy ({result['split']}, n={result['limit']})")
        if x_key == "keep":
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(stem + suffix, dpi=120)
        plt.close(fig)
        paths.append(stem + suffix)
    return paths
