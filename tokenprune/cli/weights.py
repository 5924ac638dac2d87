"""``tokenprune prune-weights <model_dir> <out_dir> ...``: structured pruning of the language backbone."""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError, InputError

#: library parameter names -> this command's flags (error messages)
FLAGS = {"source": "--calib-images", "samples": "--calib-samples", "config": "--config"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune-weights", help="structured pruning of the language backbone, exported for stock loading")
    p.add_argument("model", help="a local model folder (save_pretrained output with its processor)")
    p.add_argument("out", help="output folder (must not exist or be empty)")
    p.add_argument("--mlp", type=float, default=None, help="fraction of MLP channels removed, in [0, 1)")
    p.add_argument("--kv-groups", type=int, default=None, help="KV groups removed per layer")
    p.add_argument("--q-heads", type=int, default=None, help="query heads removed inside every kept KV group")
    p.add_argument("--blocks", type=int, default=None, help="decoder blocks removed (lowest block influence)")
    p.add_argument("--attn-layers", type=int, default=None, help="attention sublayers removed (custom export only)")
    p.add_argument("--hidden", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--method", default=None, choices=["wanda-sp", "flap", "taylor", "taylor-pm", "cfsp", "ziplm"])
    p.add_argument("--reconstruct", default=None, choices=["on", "off"],
                   help="least-squares re-fit of down_proj / o_proj after removal (default: on for ziplm)")
    p.add_argument("--damp", type=float, default=None, help="relative damping of the re-fit (default 1e-4)")
    p.add_argument("--calib-images", default="synthetic", help="a folder of images, or 'synthetic' (ShapesVQA)")
    p.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--export", default=None, choices=["stock", "custom"])
    p.add_argument("--multiple", type=int, default=None, help="stock MLP width rounding (default 32)")
    p.add_argument("--bias-compensation", default=None, choices=["on", "off"], help="FLAP bias compensation")
    p.add_argument("--config", default=None, help="a pipeline config (JSON/YAML) with 'weights' and token 'stages'; "
                                                   "the stages are attached during calibration and saved with the model")


def run(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress
    from ..weights.backbone import backbone, supported
    from ..weights.export import export, prune
    from ..weights.pipeline import calibration_batches, load_pipeline_config
    from .loading import load_local

    spec, tokens = load_pipeline_config(args.config) if args.config else load_pipeline_config({})
    overrides = {k: getattr(args, a) for k, a in [("mlp", "mlp"), ("kv_groups", "kv_groups"), ("q_heads", "q_heads"),
                                                  ("blocks", "blocks"), ("attn_layers", "attn_layers"),
                                                  ("hidden", "hidden"), ("method", "method"), ("export", "export"),
                                                  ("multiple", "multiple"), ("damp", "damp")]
                 if getattr(args, a) is not None}
    if args.bias_compensation is not None:
        overrides["bias_compensation"] = args.bias_compensation == "on"
    if args.reconstruct is not None:
        overrides["reconstruct"] = args.reconstruct == "on"
    spec = replace(spec, **overrides)
    if args.hidden:
        raise ConfigError(f"--hidden: got {args.hidden}; the hidden size is never pruned (the projector writes it)")
    if not os.path.isdir(args.model) or not os.path.isfile(os.path.join(args.model, "config.json")):
        raise InputError(f"model: {args.model!r} is not a saved model folder (no config.json)")
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        raise ConfigError(f"out: {args.out!r} exists and is not an empty folder")
    try:
        with open(os.path.join(args.model, "config.json")) as f:
            model_type = json.load(f).get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise InputError(f"model: cannot read {args.model!r}/config.json ({e})") from e
    supported(model_type)
    model, processor = load_local(args.model)
    bb = backbone(model)
    spec.validate_for(bb)  # before calibration, so a bad plan costs nothing and writes nothing
    batches = calibration_batches(processor, args.calib_images, args.calib_samples)
    dense_params = sum(p.numel() for p in model.parameters())
    dense_kv = 2 * len(bb.layers) * bb.kv_heads * bb.head_dim
    t0 = time.perf_counter()
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task(f"calibrating ({spec.method})", total=len(batches))
        plan, _ = prune(model, spec, batches, token_config=tokens, progress=lambda: prog.advance(task))
    calib_s = time.perf_counter() - t0
    report = export(model, plan, args.out, processor=processor, verify_inputs=batches[0])
    if tokens is not None:
        with open(os.path.join(args.out, "tokenprune_config.json"), "w") as f:
            f.write(tokens.to_json())
    bb = backbone(model)
    kv = sum(2 * len(lp.kv_keep) * bb.head_dim for lp in plan.layers if lp.attention)
    t = Table(title=f"prune-weights: {spec.method}, {spec.export} export -> {args.out}")
    t.add_column("")
    t.add_column("dense")
    t.add_column("pruned")
    t.add_row("parameters", f"{dense_params:,}", f"{report['params']:,} ({report['params'] / dense_params:.3f})")
    t.add_row("blocks", str(plan.dense_layers), f"{len(plan.layers)} (removed {plan.removed_blocks})")
    s = plan.scores
    t.add_row("MLP width per layer", str(len(s["mlp"][0])), ", ".join(str(len(lp.mlp_keep)) for lp in plan.layers))
    t.add_row("query / KV heads per layer", f"{len(s['heads'][0])} / {len(s['kv_groups'][0])}",
              f"{len(plan.layers[0].heads_keep)} / {len(plan.layers[0].kv_keep)}")
    t.add_row("attention sublayers", str(plan.dense_layers), str(sum(lp.attention for lp in plan.layers)))
    t.add_row("KV-cache values per token", f"{dense_kv:,}", f"{kv:,} ({kv / dense_kv:.3f})")
    console.print(t)
    console.print(f"calibration + pruning: {calib_s:.1f} s on {len(batches)} samples; reload check "
                  f"max |Δlogit| = {report.get('reload_max_abs_diff', float('nan')):.2g}; plan: "
                  f"{os.path.join(args.out, 'tokenprune_weights.json')}")
    load = ("AutoModelForImageTextToText.from_pretrained" if spec.export == "stock"
            else "tokenprune.weights.load_pruned")
    console.print(f"load with {load}({args.out!r})")
    return 0

