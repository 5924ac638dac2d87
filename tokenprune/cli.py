"""The ``tokenprune`` command line."""
from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from .errors import TokenPruneError


def _info(args: argparse.Namespace, console: Console) -> int:
    from .adapters import ADAPTERS
    from .presets import PRESETS
    from .registry import REDUCERS, SCORERS, SELECTORS

    t = Table(title="Adapters (config.model_type)")
    t.add_column("model_type")
    t.add_column("adapter")
    for k in sorted(ADAPTERS):
        t.add_row(k, ADAPTERS[k].__name__)
    console.print(t)
    p = Table(title="Presets (stages shown for a 32-layer LM)")
    p.add_column("name")
    p.add_column("stages")
    p.add_column("description")
    for name in sorted(PRESETS):
        desc, stages = PRESETS[name]
        p.add_row(name, json.dumps(stages(32)), desc)
    console.print(p)
    console.print(f"scorers: {', '.join(n for n in SCORERS.names() if not n.startswith('_'))}")
    console.print(f"selectors: {', '.join(SELECTORS.names())}   reducers: {', '.join(REDUCERS.names())}")
    return 0


def _demo(args: argparse.Namespace, console: Console) -> int:
    from .demo import has_embedded

    if has_embedded() and not args.random:
        return _demo_embedded(args, console)
    return _demo_random(args, console)


def _demo_embedded(args: argparse.Namespace, console: Console) -> int:
    from rich.markup import escape
    from rich.progress import Progress

    from .demo import EMBEDDED_METHODS, run_embedded_demo
    from .shapesvqa.data import examples

    exs = examples("test", args.samples)
    console.print("[bold]tokenprune demo[/bold]: the embedded ShapesVQA model (LLaVA-1.5 architecture, 336/14 tower "
                  f"-> 576 visual tokens per image) answers {len(exs)} test questions, densely and pruned.")
    for i, e in enumerate(exs):
        console.print(escape(f"  q{i}: [{e.qa.kind}] {e.qa.question}  (answer: {e.qa.answer})"))
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("running dense and pruned", total=len(EMBEDDED_METHODS))
        rows = run_embedded_demo(repeats=args.repeats, out_dir=args.out_dir, samples=args.samples,
                                 progress=lambda: prog.advance(task))
    t = Table(title=f"Dense vs pruned: batch of {len(exs)} (median prefill of the batch, {args.repeats} runs)")
    for col in ("method", "visual tokens kept", "prefill ms", "speedup", "LM FLOPs", "answers q0..", "correct"):
        t.add_column(col, no_wrap=col == "method")
    for r in rows:
        t.add_row(r.method, str(r.visual_tokens), f"{r.prefill_ms:.1f}", f"{r.speedup:.2f}x", f"{r.flops_ratio:.3f}",
                  " ".join(r.answers[:4]) + (" .." if len(r.answers) > 4 else ""), f"{r.correct}/{len(r.answers)}")
    console.print(t)
    if args.out_dir:
        console.print(f"kept patches of the first image, one PNG per method: {args.out_dir}/")
    return 0


def _demo_random(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from .demo import DEMO_GEOMETRY, DEMO_METHODS, run_demo

    console.print("[bold]tokenprune demo[/bold]: LLaVA-1.5-shaped model built in code with random weights "
                  f"(576 visual tokens/image, LM {DEMO_GEOMETRY}); batch of 2 prompts, one image each.")
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("timing dense and pruned prefill", total=len(DEMO_METHODS))
        rows = run_demo(repeats=args.repeats, new_tokens=args.new_tokens, progress=lambda: prog.advance(task))
    t = Table(title="Dense vs pruned (median prefill of the batch, CPU)")
    for col in ("method", "visual tokens kept", "prefill ms", "speedup", "LM FLOPs ratio", "greedy tokens (sample 0)",
                "batch = dense?"):
        t.add_column(col, no_wrap=col == "method")
    for r in rows:
        t.add_row(r.method, str(r.visual_tokens), f"{r.prefill_ms:.1f}", f"{r.speedup:.2f}x", f"{r.flops_ratio:.3f}",
                  " ".join(map(str, r.tokens[:6])), "yes" if r.same_as_dense else "no")
    console.print(t)
    console.print("Random weights: the continuations show that generate() runs end to end, not answer quality.")
    return 0


def _calibrate(args: argparse.Namespace, console: Console) -> int:
    import os

    from transformers import AutoModelForImageTextToText, AutoProcessor

    from .calibrate import fit_position_trend, load_images, processor_batches, save_calibration
    from .errors import InputError

    if not os.path.isdir(args.model):
        raise InputError(f"model: {args.model!r} is not a model folder (save_pretrained output with its processor)")
    if args.samples < 1:
        raise InputError(f"--samples: got {args.samples}; allowed: >= 1")
    model = AutoModelForImageTextToText.from_pretrained(args.model, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(args.model, local_files_only=True)
    try:
        images = load_images(args.images, args.samples)
    except FileNotFoundError as e:
        raise InputError(str(e)) from e
    with console.status(f"fitting the attention position trend at layer {args.layer} on {len(images)} images"):
        trend = fit_position_trend(model, processor_batches(processor, images), args.layer, args.query)
    save_calibration(trend, args.out)
    console.print(f"slope {trend['slope']:+.4f} (log-attention per image length) over {trend['images']} images "
                  f"-> {args.out}; use Stage(..., scorer='debiased_attention', mode='calibrated', "
                  f"calibration='{args.out}')")
    return 0


def _bench(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from .bench.run import BenchSpec, plot, run, save
    from .errors import InputError

    def ints(text: str, name: str) -> list[int]:
        try:
            return [int(x) for x in text.split(",") if x]
        except ValueError as e:
            raise InputError(f"--{name}: expected comma-separated integers, got {text!r}") from e

    stages = [s if s == "pre_llm" else ints(s, "stages")[0] for s in args.stages.split(",") if s]
    spec = BenchSpec(geometry=args.geometry, layers=args.layers, batches=ints(args.batch, "batch"),
                     keeps=ints(args.keep, "keep"), stages=stages, presets=[p for p in args.presets.split(",") if p],
                     repeats=args.repeats, decode_steps=args.decode_steps, device=args.device)
    if args.quick:
        spec = BenchSpec(geometry="small", layers=2, batches=[1], keeps=[576, 64], stages=["pre_llm", 1],
                         presets=["fastv", "uniform"], repeats=1, decode_steps=1, device=args.device)
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("benchmarking", total=None)
        result = run(spec, progress=lambda d: prog.update(task, description=d))
    save(result, args.out)
    t = Table(title=f"{result['geometry']}: {result['note']}; {result['layers']} LM layers, {result['device']}")
    for col in ("batch", "preset", "stage", "kept", "LM prefill ms", "speedup", "ideal", "efficiency", "vs short",
                "TTFT ms", "decode ms/tok", "KV MiB", "peak MiB", "scoring %"):
        t.add_column(col)
    for r in result["rows"]:
        t.add_row(str(r["batch"]), r["preset"], str(r["stage"] if r["stage"] is not None else "-"),
                  str(r["visual_tokens"]), f"{r['lm_prefill_ms']:.1f}", f"{r['lm_speedup']:.2f}x",
                  f"{r['ideal_speedup']:.2f}x", f"{r['efficiency']:.2f}",
                  f"{r['efficiency_vs_short']:.2f}" if "efficiency_vs_short" in r else "-", f"{r['ttft_ms']:.1f}",
                  f"{r['decode_ms_per_token']:.2f}", f"{r['kv_cache_bytes'] / 2**20:.2f}",
                  "-" if r.get("peak_memory_bytes") is None else f"{r['peak_memory_bytes'] / 2**20:.0f}",
                  f"{r['scoring_overhead_pct']:.2f}")
    console.print(t)
    if args.plot:
        console.print(f"plot: {args.plot}" if plot(result, args.plot) else "plot skipped: pip install matplotlib")
    console.print(f"results: {args.out}")
    return 0


def _eval(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from .quality import Sweep, run_sweep, save

    def split(text: str) -> list[str]:
        return [x for x in text.split(",") if x]

    try:
        keeps = [int(k) for k in split(args.keep)]
    except ValueError as e:
        raise TokenPruneError(f"--keep: expected comma-separated integers, got {args.keep!r}") from e
    sw = Sweep(model=args.model, presets=split(args.presets), keeps=keeps, split=args.split, limit=args.limit,
               batch=args.batch, layer=args.layer)
    sw.validate()
    n = len(sw.presets) * len(sw.keeps) + 1
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("loading", total=n)
        result = run_sweep(sw, progress=lambda d: (prog.update(task, description=d), prog.advance(task)))
    paths = save(result, args.out)
    d = result["dense"]
    t = Table(title=f"ShapesVQA {result['split']} (n={result['limit']}), model {result['model']}")
    for col in ("method", "kept/576", "accuracy", "localized", "global", "retention", "ms/sample", "speedup",
                "LM FLOPs"):
        t.add_column(col)
    t.add_row("dense", "576", f"{d['accuracy']:.3f}", f"{d['localized']:.3f}", f"{d['global']:.3f}", "1.000",
              f"{d['ms_per_sample']:.1f}", "1.00x", "1.000")
    for r in result["rows"]:
        t.add_row(r["preset"], str(r["keep"]), f"{r['accuracy']:.3f}", f"{r['localized']:.3f}", f"{r['global']:.3f}",
                  f"{r['retention']:.3f}", f"{r['ms_per_sample']:.1f}", f"{r['speedup']:.2f}x",
                  f"{r['flops_ratio']:.3f}")
    console.print(t)
    console.print("written: " + ", ".join(paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenprune", description="Visual-token pruning for HF VLMs")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="list adapters, presets, scorers")
    d = sub.add_parser("demo", help="dense vs pruned on a model built in code")
    d.add_argument("--repeats", type=int, default=3, help="timed prefill repeats (median)")
    d.add_argument("--new-tokens", type=int, default=8, help="greedy tokens generated per method (--random)")
    d.add_argument("--samples", type=int, default=8, help="test questions answered (embedded model)")
    d.add_argument("--out-dir", default="demo_out", help="PNGs of the kept patches go here ('' to skip)")
    d.add_argument("--random", action="store_true", help="time the random-weight LLaVA-1.5-shaped model instead")
    c = sub.add_parser("calibrate", help="fit the attention position trend for debiased_attention(mode='calibrated')")
    c.add_argument("model", help="a local model folder (with its processor)")
    c.add_argument("--layer", type=int, default=2, help="LM layer whose attention is debiased")
    c.add_argument("--query", choices=["last", "text"], default="last")
    c.add_argument("--images", default="synthetic", help="a folder of images, or 'synthetic'")
    c.add_argument("--samples", type=int, default=32, help="number of calibration images")
    c.add_argument("--out", default="position_trend.json")
    b = sub.add_parser("bench", help="dense vs pruned latency, KV cache and FLOPs against the ideal")
    b.add_argument("--geometry", default="small", help="small | llava15-7b | qwen2vl-2b")
    b.add_argument("--layers", type=int, default=None, help="LM layers (default: the geometry's real depth)")
    b.add_argument("--batch", default="1,8")
    b.add_argument("--keep", default="576,192,128,64", help="visual tokens kept per image (576 = dense)")
    b.add_argument("--stages", default="pre_llm,2", help="pre_llm and/or LM layer indices")
    b.add_argument("--presets", default="fastv,uniform", help="single-stage presets placed at each stage")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--decode-steps", type=int, default=4)
    b.add_argument("--device", default="cpu")
    b.add_argument("--quick", action="store_true", help="a seconds-long smoke run (CI)")
    b.add_argument("--out", default="bench.json")
    b.add_argument("--plot", default=None, help="write a speedup-vs-kept plot (PNG) here")
    e = sub.add_parser("eval", help="accuracy of presets x budgets on ShapesVQA (JSON, CSV, Pareto plots)")
    e.add_argument("--model", default="embedded", help="a ShapesVQA model folder, or 'embedded'")
    e.add_argument("--presets", default="fastv,divprune,visionzip,random")
    e.add_argument("--keep", default="288,192,144,64,32", help="visual tokens kept per image (of 576)")
    e.add_argument("--split", default="test")
    e.add_argument("--limit", type=int, default=200, help="first N examples of the split")
    e.add_argument("--batch", type=int, default=16)
    e.add_argument("--layer", type=int, default=None, help="LM layer for in-LLM presets (default: the preset's)")
    e.add_argument("--out", default="results.json")
    from .weights import cli as weights_cli

    weights_cli.add_parser(sub)
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=130)
    try:
        if min(getattr(args, "repeats", 1), getattr(args, "new_tokens", 1), getattr(args, "samples", 1)) < 1:
            raise TokenPruneError("--repeats, --new-tokens and --samples must be >= 1")
        commands = {"info": _info, "demo": _demo, "calibrate": _calibrate, "bench": _bench,
                    "prune-weights": weights_cli.run, "eval": _eval}
        return commands[args.cmd](args, console)
    except TokenPruneError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
