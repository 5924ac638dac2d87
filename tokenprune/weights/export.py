"""Prune, export with verification, and load back.

``stock`` exports are ordinary ``save_pretrained`` folders (the stock Auto class loads them, no remote code).
``custom`` exports hold the config, ``tokenprune_weights.json`` (the plan) and ``tokenprune_model.safetensors``
(the model's own parameter names); stock ``from_pretrained`` refuses them (no standard weights file) and
:func:`load_pruned` rebuilds the per-layer shapes before loading. Every export is written to a temporary sibling
folder, reloaded, compared with the in-memory model, and only then moved to its final place.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, InputError, InternalError
from .apply import SkippedAttention, apply_plan, bias_flags
from .backbone import backbone
from .plan import WeightPlan, WeightSpec, expected_params, make_plan
from .stats import CalibStats, collect

PLAN_FILE = "tokenprune_weights.json"
CUSTOM_WEIGHTS = "tokenprune_model.safetensors"


def prune(model: Any, spec: WeightSpec, batches: Iterable[dict[str, Any]], token_config: Any = None,
          progress: Any = None) -> tuple[WeightPlan, CalibStats]:
    """Calibrates (optionally under ``token_config``), plans and applies ``spec`` to ``model`` in place.

    Checks the spec before any forward pass; afterwards the parameter count is checked against the plan.
    """
    bb = backbone(model)
    spec.validate_for(bb)
    stats = collect(bb, batches, taylor=spec.method in ("taylor", "taylor-pm"), token_config=token_config,
                    progress=progress, gram=spec.needs_gram)
    plan = make_plan(bb, stats, spec)
    mlp_bias, attn_bias = bias_flags(bb, plan)
    promised = expected_params(bb, plan, mlp_bias, attn_bias)
    apply_plan(bb, plan, stats)
    got = sum(p.numel() for p in model.parameters())
    if got != promised:  # pragma: no cover - a bug, not a user error
        raise InternalError(f"pruned model has {got} parameters, the plan promised {promised}")
    plan.scores["params"] = {"pruned": got}
    model._tokenprune_weight_plan = plan
    return plan, stats


def load_pruned(path: str | Path, dtype: torch.dtype | None = None) -> Any:
    """Loads a ``custom`` (or ``stock``) export made by :func:`export`."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"load_pruned: {str(path)!r} has no config.json")
    if not (path / CUSTOM_WEIGHTS).is_file():
        return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, local_files_only=True).eval()
    plan = WeightPlan.from_dict(json.loads((path / PLAN_FILE).read_text()))
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    model = AutoModelForImageTextToText.from_config(config)
    bb = backbone(model)
    for i, lp in enumerate(plan.layers):
        layer = bb.layers[i]
        w = len(lp.mlp_keep)
        for lin in (layer.mlp.gate_proj, layer.mlp.up_proj):
            lin.weight = torch.nn.Parameter(lin.weight.data[:w].clone())
            if lin.bias is not None:
                lin.bias = torch.nn.Parameter(lin.bias.data[:w].clone())
            lin.out_features = w
        layer.mlp.down_proj.weight = torch.nn.Parameter(layer.mlp.down_proj.weight.data[:, :w].clone())
        layer.mlp.down_proj.in_features = w
        if not lp.attention:
            layer.self_attn = SkippedAttention(i, bb.head_dim)
    load_model(model, str(path / CUSTOM_WEIGHTS), strict=True)
    model.eval()
    if dtype is not None:
        model.to(dtype)
    model._tokenprune_weight_plan = plan
    return model


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"out_dir: {str(out_dir)!r} exists and is not an empty folder")


def export(model: Any, plan: WeightPlan, out_dir: str | Path, processor: Any = None,
           verify_inputs: dict[str, torch.Tensor] | None = None, atol: float = 1e-5) -> dict[str, Any]:
    """Saves the pruned ``model`` (and ``processor``) to ``out_dir`` and verifies the reload; returns a report."""
    from safetensors.torch import save_model

    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if plan.spec.export == "stock":
            model.save_pretrained(tmp)
        else:
            model.config.save_pretrained(tmp)
            save_model(model, str(tmp / CUSTOM_WEIGHTS))
        if processor is not None:
            processor.save_pretrained(tmp)
        (tmp / PLAN_FILE).write_text(json.dumps(plan.to_dict(), indent=1))
        report = {"export": plan.spec.export, "params": sum(p.numel() for p in model.parameters())}
        if verify_inputs is not None:
            reloaded = load_pruned(tmp)
            with torch.no_grad():
                a = model(**verify_inputs).logits.float()
                b = reloaded(**verify_inputs).logits.float()
            diff = (a - b).abs().max().item()
            report["reload_max_abs_diff"] = diff
            if diff > atol:
                raise InternalError(f"reloaded model differs from the pruned model by {diff:.3g} (> {atol})")
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
        return report
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
