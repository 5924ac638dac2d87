"""``tokenprune bench``: dense vs pruned latency, KV cache and FLOPs against the ideal."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def add_parser(sub: argparse._SubParsersAction) -> None:
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


def run(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from ..apps.bench.run import BenchSpec, plot, run, save
    from ..errors import InputError

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
