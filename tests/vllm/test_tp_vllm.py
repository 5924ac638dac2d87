"""Tensor parallelism (two ranks on vLLM's CPU backend) with the plugin: every rank embeds and selects the same tokens
(no rank-local randomness or reductions), so a pruned model answers with the HF path's tokens and log-probabilities,
as it does at TP = 1 (the other modules' tests)."""
import pytest

from .conftest import run_vllm, same_as_hf

pytestmark = pytest.mark.vllm
CFG = {"stages": [{"at": "pre_llm", "keep": 0.25, "scorer": "norm", "selector": "maxmin"}]}


def test_llava_tp2_equals_hf(shapes_dirs):
    from .test_llava_vllm import hf_greedy

    hf_dir, vllm_dir = shapes_dirs
    res = run_vllm(vllm_dir, CFG, tp=2, timeout=600)
    assert res["rc"] == 0, res["stdout"][-3000:] + res["stderr"][-3000:]
    same_as_hf(res["result"], hf_greedy(hf_dir, CFG))


def test_qwen2_vl_tp2_equals_hf(tmp_path):
    from .qwen_inputs import save_model
    from .test_qwen_vllm import hf_greedy

    qwen_dir = save_model("qwen2_vl", tmp_path)
    res = run_vllm(qwen_dir, CFG, kind="qwen", tp=2, timeout=600)
    assert res["rc"] == 0, res["stdout"][-3000:] + res["stderr"][-3000:]
    same_as_hf(res["result"], hf_greedy(qwen_dir, CFG))
