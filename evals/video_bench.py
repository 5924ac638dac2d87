"""Benchmark (not a test): video prefill on the Qwen2-VL-2B LM geometry — speedup vs kept fraction against the FLOP
ideal, scoring overhead, KV-cache bytes — for the video presets and the image ones applied to video.

    python -m evals.video_bench --frames 32 --size 448 --layers 4 --keeps 0.5 0.25 0.125 --out evals/video_bench_cpu.json

A 32-frame clip at 448x448 is 16 temporal patches x 16 x 16 merged tokens = 4,096 visual tokens; ``--frames 128``
gives 16,384. Random weights and pixels (timing only); the stand-in vision tower is the 2-block one of the
``qwen2vl-2b`` bench geometry. Each row is measured in the same process as its dense reference.
"""
from __future__ import annotations

import argparse
import json

import torch

from tokenprune.apps.bench import geometry
from tokenprune.apps.bench.measure import measure
from tokenprune.apps.bench.run import _row
from tokenprune.config import PruneConfig
from tokenprune.testing.tiny import BOS, VEND, VIDEO, VSTART

PRESETS = ["video-evs", "video-divprune", "video-quota", "fastv", "random"]


def video_inputs(frames: int, size: int, text_tokens: int = 48) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    t, side = frames // 2, size // 14
    n = t * (side // 2) ** 2
    head = [BOS] + torch.randint(3, 140, (text_tokens // 3,), generator=gen).tolist()
    tail = torch.randint(3, 140, (text_tokens - len(head),), generator=gen).tolist()
    ids = head + [VSTART] + [VIDEO] * n + [VEND] + tail
    mm = [0] * (len(head) + 1) + [2] * n + [0] * (len(tail) + 1)
    return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "mm_token_type_ids": torch.tensor([mm]),
            "pixel_values_videos": torch.rand(t * side * side, 3 * 2 * 14 * 14, generator=gen),
            "video_grid_thw": torch.tensor([[t, side, side]])}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--layers", type=int, default=4, help="LM layers (the real model has 28)")
    ap.add_argument("--keeps", type=float, nargs="+", default=[0.5, 0.25, 0.125])
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from tqdm import tqdm

    model, g = geometry.build("qwen2vl-2b", args.layers)
    inputs = video_inputs(args.frames, args.size)
    visual = int((inputs["input_ids"] == VIDEO).sum())
    kw = dict(repeats=args.repeats, decode_steps=2)
    dense = measure(model, inputs, None, "dense", **kw)
    rows = [_row(dense, dense, preset="dense", keep=1.0)]
    print(f"dense: {visual} video tokens, LM prefill {dense.lm_prefill_ms:.0f} ms")
    for preset in tqdm([(p, k) for p in args.presets for k in args.keeps], desc="presets"):
        name, keep = preset
        cfg = PruneConfig.from_preset(name, keep=keep, num_layers=args.layers)
        r = _row(measure(model, inputs, cfg, name, **kw), dense, preset=name, keep=keep)
        rows.append(r)
        tqdm.write(f"{name:15s} keep {keep:<6} kept {r['visual_tokens']:5d}  LM speedup {r['lm_speedup']:.2f}x "
                   f"(ideal {r['ideal_speedup']:.2f}x)  scoring {r['scoring_overhead_pct']:.2f}% of dense prefill  "
                   f"KV {r['kv_ratio']:.3f}")
    result = {"geometry": g.name, "layers": args.layers, "frames": args.frames, "size": args.size,
              "visual_tokens": visual, "threads": torch.get_num_threads(), "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
