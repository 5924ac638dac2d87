"""Throughput of vLLM with and without the tokenprune plugin (a benchmark, not a test; needs ``.venv-vllm``).

    .venv-vllm/bin/python -m evals.vllm_bench [--model embedded] [--requests 64] [--keep 64,144] \\
        [--out evals/vllm_bench_cpu.json]

The embedded ShapesVQA model (converted to vLLM's LLaVA weight names) answers ``--requests`` test questions in one
``LLM.generate`` call (greedy, 2 new tokens: the answer and EOS), after a warm-up call, once stock and once per
budget with ``TOKENPRUNE_VLLM_CONFIG`` set (a DivPrune-style config: norm scores, max-min selection). Each run is
its own process, so every engine starts clean, with the prefix and processor caches off (the warm-up's prompts
would otherwise be cache hits in the timed call). Reports prompt tokens per request, wall time, requests/s, prompt
tokens/s and accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from tokenprune.results import model_identity, write_json

from .subprocess_run import emit, run_worker


def worker(model_dir: str, n: int) -> dict:
    from vllm import LLM, SamplingParams

    from tokenprune.shapesvqa import model as M
    from tokenprune.shapesvqa.data import examples

    proc = M.make_processor()
    exs = examples("test", n)
    prompts = [{"prompt": M.prompt(proc, e.qa.question), "multi_modal_data": {"image": e.image()}} for e in exs]
    # caches off: the warm-up's prompts would otherwise be prefix-cache hits in the timed call
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=1024, max_num_seqs=16, seed=0,
              enable_prefix_caching=False, mm_processor_cache_gb=0)
    params = SamplingParams(temperature=0, max_tokens=2)
    llm.generate(prompts[:8], params, use_tqdm=False)  # warm-up
    t = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - t
    words = proc.tokenizer.convert_ids_to_tokens
    correct = sum(words(list(o.outputs[0].token_ids))[0] == e.qa.answer for o, e in zip(outs, exs))
    prompt_tokens = sum(len(o.prompt_token_ids) for o in outs)
    return {"requests": n, "wall_s": wall, "requests_per_s": n / wall, "prompt_tokens_per_request": prompt_tokens / n,
            "prompt_tokens_per_s": prompt_tokens / wall, "accuracy": correct / n}


def run(model_dir: str, n: int, config: dict | None) -> dict:
    return run_worker("evals.vllm_bench", ["--worker", model_dir, "--requests", str(n)],
                      {"VLLM_CPU_KVCACHE_SPACE": "2"}, json.dumps(config) if config is not None else None, str(config))


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="embedded", help="a ShapesVQA (LLaVA) folder, or 'embedded'")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--keep", default="64,144", help="visual tokens kept per image (of 576)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        emit(worker(args.worker, args.requests))
        return None
    from tokenprune.integrations.vllm.checkpoint import llava_for_vllm
    from tokenprune.shapesvqa.model import EMBEDDED_DIR

    src = EMBEDDED_DIR if args.model == "embedded" else args.model
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        served = str(llava_for_vllm(src, os.path.join(tmp, "vllm")))
        for keep in [None] + [int(k) for k in args.keep.split(",")]:
            cfg = None if keep is None else {"stages": [{"at": "pre_llm", "keep": keep, "scorer": "norm",
                                                         "selector": "maxmin"}]}
            r = {"keep": keep or 576, **run(served, args.requests, cfg)}
            rows.append(r)
            print(f"keep {r['keep']:>3}: {r['prompt_tokens_per_request']:6.1f} prompt tokens/request  "
                  f"{r['wall_s']:6.2f} s  {r['requests_per_s']:6.2f} req/s  {r['prompt_tokens_per_s']:8.0f} prompt "
                  f"tok/s  accuracy {r['accuracy']:.3f}", flush=True)
    for r in rows:
        r["speedup"] = rows[0]["wall_s"] / r["wall_s"]
    result = {"model": model_identity(src, "embedded" if args.model == "embedded" else None),
              "threads": os.cpu_count(), "rows": rows}
    return write_json(args.out, result)


if __name__ == "__main__":
    main()
