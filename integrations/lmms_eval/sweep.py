"""``tokenprune eval --backend lmms-eval``: presets × budgets through lmms-eval, in process (one model load per
config), written as the in-process harness writes its sweep (JSON, CSV, accuracy-vs-tokens/ms plots).

lmms-eval exits 0 and logs an error when a task fails; here a config whose results lack any requested task raises
an :class:`~tokenprune.errors.InputError`, so the command exits non-zero.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

from ...errors import InputError, TokenPruneError

#: headline metrics lmms-eval tasks report, with their full scale (a row's accuracy is the mean over its tasks of
#: metric / scale, so MME's 0-2000 and Video-MME's 0-100 sit beside exact-match fractions)
METRICS = {"exact_match": 1.0, "acc": 1.0, "pope_accuracy": 1.0, "mmmu_acc": 1.0, "seed_image": 1.0,
           "gpt_eval_score": 100.0, "videomme_perception_score": 100.0, "mlvu_percetion_score": 100.0,
           "mme_perception_score": 2000.0}


@dataclass
class LmmsSweep:
    model: str = "embedded"
    tasks: list[str] = field(default_factory=lambda: ["shapesvqa"])
    presets: list[str] = field(default_factory=lambda: ["fastv", "divprune"])
    keeps: list[int] = field(default_factory=lambda: [144, 64])
    limit: int = 200
    batch: int = 4
    layer: int | None = None
    include_path: str | None = None  # a folder of task YAMLs; ShapesVQA tasks are written here when None
    model_args: str = ""  # more --model_args for every run (dtype=bfloat16,device=cuda,...)


def _metric(task_result: dict[str, Any]) -> float:
    """The task's headline metric as a fraction of its scale."""
    for m, scale in METRICS.items():
        if f"{m},none" in task_result:
            return float(task_result[f"{m},none"]) / scale
    raise InputError(f"tasks: no headline metric in {sorted(task_result)}; known: {', '.join(METRICS)}")


def _stats(path: str) -> dict[str, float]:
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    if not rows:
        return {"ms_per_sample": float("nan"), "flops_ratio": 1.0, "visual_kept": float("nan")}
    ms = [r["batch_prefill_ms"] / r["batch_size"] for r in rows if r.get("batch_prefill_ms") is not None]
    flops = [r.get("flops_ratio", 1.0) for r in rows]
    kept = [r["stages"][-1]["kept"] for r in rows if r.get("stages")]
    return {"ms_per_sample": sum(ms) / len(ms) if ms else float("nan"), "flops_ratio": sum(flops) / len(flops),
            "visual_kept": sum(kept) / len(kept) if kept else float("nan")}


def run_lmms_sweep(sw: LmmsSweep, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Dense, then every preset × keep; returns the harness's result layout (``dense``, ``rows``) plus per-task
    accuracies."""
    try:
        from lmms_eval.evaluator import simple_evaluate
        from lmms_eval.tasks import TaskManager
    except ImportError as e:
        raise InputError(f"backend: lmms-eval is not installed in this environment ({e}); run "
                         f"bash scripts/setup_lmms.sh and use .venv-lmms/bin/tokenprune") from e
    from ...presets import PRESETS

    unknown = [p for p in sw.presets if p not in PRESETS]
    if unknown:
        raise InputError(f"presets: unknown {unknown}; allowed: {', '.join(sorted(PRESETS))}")
    with tempfile.TemporaryDirectory() as tmp:
        include = sw.include_path
        if include is None:
            from .tasks import write_tasks

            include = str(write_tasks(os.path.join(tmp, "tasks"), "test", sw.limit))
        manager = TaskManager(include_path=include)

        def one(label: str, args: str) -> dict[str, Any]:
            if progress:
                progress(label)
            stats = os.path.join(tmp, f"{len(os.listdir(tmp))}.jsonl")
            full = ",".join(x for x in (f"pretrained={sw.model}", sw.model_args, args, f"stats_path={stats}") if x)
            try:
                res = simple_evaluate(model="tokenprune", model_args=full, tasks=list(sw.tasks), batch_size=sw.batch,
                                      limit=sw.limit, task_manager=manager, log_samples=False)
            except TokenPruneError:
                raise
            except Exception as e:  # noqa: BLE001 - lmms-eval raises KeyError, ValueError... for a bad task
                raise InputError(f"tasks: lmms-eval failed on {list(sw.tasks)} with model_args {full!r} "
                                 f"({type(e).__name__}: {e})") from e
            missing = [t for t in sw.tasks if t not in ((res or {}).get("results") or {})]
            if missing:
                raise InputError(f"tasks: lmms-eval produced no result for {missing} with model_args {full!r} "
                                 f"(see its log above)")
            accs = {t: _metric(res["results"][t]) for t in sw.tasks}
            return {"accuracy": sum(accs.values()) / len(accs), "tasks": accs, **_stats(stats)}

        dense = one("dense", "")
        rows = []
        for name in sw.presets:
            for keep in sw.keeps:
                layer = f",layer={sw.layer}" if sw.layer is not None and PRESETS[name].single_layer_stage else ""
                r = one(f"{name} keep={keep}", f"preset={name},keep={keep}{layer}")
                rows.append({"preset": name, "keep": keep, **r,
                             "retention": r["accuracy"] / dense["accuracy"] if dense["accuracy"] else float("nan"),
                             "speedup": dense["ms_per_sample"] / r["ms_per_sample"]})
    return {"backend": "lmms-eval", "model": sw.model, "tasks": sw.tasks, "split": "+".join(sw.tasks),
            "limit": sw.limit, "dense": dense, "rows": rows, "complete": True}
