"""Accuracy of the shipped Qwen2-VL ShapesVQA model served by vLLM (stock, and pruned through the tokenprune plugin)
next to the Hugging Face path on the same questions (a benchmark, not a test; needs ``.venv-vllm``).

    .venv-vllm/bin/python -m evals.vllm_qwen_accuracy [--images 96] [--clips 48] [--keep 0.25] \\
        [--out evals/vllm_qwen_accuracy_cpu.json]

Per split (test images at the model's five sizes, ``clips-test`` clips of 8 frames): the first generated token
(greedy) of every question, dense and with a DivPrune-style pre-LLM stage (norm scores, max-min selection, ``--keep``
of each image's or clip's tokens), once through vLLM (each run its own process: a clean engine, caches off) and once
through transformers with ``tokenprune.pruned``. Reports accuracy (overall and per question kind), prompt tokens per
request, and how often vLLM's answer equals the HF path's.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

from tokenprune.results import model_identity, write_json

from .subprocess_run import emit, run_worker

FPS = 24.0  # any fps: frames are passed as given (do_sample_frames=False), as the HF processor takes them


def _examples(processor: Any, split: str, n: int) -> list:
    from tokenprune.shapesvqa.embedded import split_examples

    return split_examples(processor, split, n)


def worker(model_dir: str, split: str, n: int) -> dict:
    from vllm import LLM, SamplingParams

    from tokenprune.shapesvqa import qwen as Q

    proc = Q.QwenShapesProcessor.from_pretrained(model_dir)
    video = split.startswith("clips")
    prompts = []
    for e in _examples(proc, split, n):
        text = Q.prompt(proc, e.qa.question, "video" if video else "image")
        if video:
            v = e.frames()
            meta = {"fps": FPS, "frames_indices": list(range(len(v))), "total_num_frames": len(v),
                    "duration": len(v) / FPS}
            prompts.append({"prompt": text, "multi_modal_data": {"video": (v, meta)},
                            "mm_processor_kwargs": {"do_sample_frames": False}})
        else:
            prompts.append({"prompt": text, "multi_modal_data": {"image": e.image()}})
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=1024, max_num_seqs=8, seed=0,
              enable_prefix_caching=False, mm_processor_cache_gb=0,
              limit_mm_per_prompt={"image": 0 if video else 1, "video": 1 if video else 0})
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=1), use_tqdm=False)
    words = proc.tokenizer.convert_ids_to_tokens
    return {"answers": [words(list(o.outputs[0].token_ids))[0] for o in outs],
            "prompt_tokens": [len(o.prompt_token_ids) for o in outs]}


def hf_answers(model_dir: str, split: str, n: int, config: dict | None) -> dict:
    import torch

    import tokenprune as tp
    from tokenprune.shapesvqa import embedded as E

    model, proc = E.load(model_dir)
    exs = _examples(proc, split, n)
    answers, tokens = [], []
    ids = [model.config.image_token_id, model.config.video_token_id]
    for i in range(0, len(exs), 8):
        batch = E.batch_inputs(proc, exs[i:i + 8])
        with torch.no_grad():
            if config is None:
                logits = model(**batch).logits[:, -1]
                kept = [int(sum((row == t).sum() for t in ids)) for row in batch["input_ids"]]
            else:
                with tp.pruned(model, tp.PruneConfig.from_dict(config)) as h:
                    logits = model(**batch).logits[:, -1]
                    kept = list(h.stats.stages[0].kept)
        answers += proc.tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
        text = [int(m.sum()) - int(sum((row == t).sum() for t in ids))
                for m, row in zip(batch["attention_mask"], batch["input_ids"])]
        tokens += [t + k for t, k in zip(text, kept)]
    return {"answers": answers, "prompt_tokens": tokens, "gold": [e.qa.answer for e in exs],
            "kinds": [e.qa.kind for e in exs]}


def score(answers: list[str], gold: list[str], kinds: list[str]) -> dict:
    out = {"accuracy": sum(a == g for a, g in zip(answers, gold)) / len(gold)}
    for k in sorted(set(kinds)):
        idx = [i for i, x in enumerate(kinds) if x == k]
        out[k] = sum(answers[i] == gold[i] for i in idx) / len(idx)
    return out


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="embedded-qwen", help="a Qwen ShapesVQA folder, or 'embedded-qwen'")
    ap.add_argument("--images", type=int, default=96, help="test images")
    ap.add_argument("--clips", type=int, default=48, help="clips-test clips")
    ap.add_argument("--keep", type=float, default=0.25, help="kept fraction of each item's visual tokens")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        emit(worker(args.worker[0], args.worker[1], int(args.worker[2])))
        return None
    from tokenprune.shapesvqa.embedded import NAMES

    model_dir = str(NAMES.get(args.model, args.model))
    config = {"stages": [{"at": "pre_llm", "keep": args.keep, "scorer": "norm", "selector": "maxmin"}]}
    rows = []
    for split, n in (("test", args.images), ("clips-test", args.clips)):
        for cfg in (None, config):
            label = "dense" if cfg is None else f"divprune-like keep {args.keep}"
            hf = hf_answers(model_dir, split, n, cfg)
            vl = run_worker("evals.vllm_qwen_accuracy", ["--worker", model_dir, split, str(n)],
                            {"VLLM_CPU_KVCACHE_SPACE": "2"}, json.dumps(cfg) if cfg is not None else None,
                            f"{split} {label}")
            row = {"split": split, "config": label, "n": n,
                   "hf": {**score(hf["answers"], hf["gold"], hf["kinds"]),
                          "prompt_tokens_mean": sum(hf["prompt_tokens"]) / n},
                   "vllm": {**score(vl["answers"], hf["gold"], hf["kinds"]),
                            "prompt_tokens_mean": sum(vl["prompt_tokens"]) / n},
                   "same_answer": sum(a == b for a, b in zip(hf["answers"], vl["answers"])) / n,
                   "same_prompt_tokens": sum(a == b for a, b in zip(hf["prompt_tokens"], vl["prompt_tokens"])) / n}
            rows.append(row)
            print(f"{split:10s} {label:26s} HF {row['hf']['accuracy']:.3f}  vLLM {row['vllm']['accuracy']:.3f}  "
                  f"same answer {row['same_answer']:.3f}  prompt tokens HF {row['hf']['prompt_tokens_mean']:.1f} / "
                  f"vLLM {row['vllm']['prompt_tokens_mean']:.1f}", flush=True)
    result = {"model": model_identity(model_dir, args.model if args.model in NAMES else None),
              "threads": os.cpu_count(), "rows": rows}
    return write_json(args.out, result)


if __name__ == "__main__":
    main()
