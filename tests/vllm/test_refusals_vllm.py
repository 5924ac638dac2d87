"""Multimodal architectures the plugin does not prune are refused at engine start-up with the reason (from the family
table), never served unpruned while ``TOKENPRUNE_VLLM_CONFIG`` is set."""
import pytest

from .conftest import run_vllm

pytestmark = pytest.mark.vllm
CFG = {"stages": [{"at": "pre_llm", "keep": 0.5, "scorer": "norm"}]}


@pytest.mark.parametrize("family, arch, reason", [
    ("qwen3_vl", "Qwen3VLForConditionalGeneration", "DeepStack"),
    ("llava_next", "LlavaNextForConditionalGeneration", "anyres tiles"),
    ("llava_onevision", "LlavaOnevisionForConditionalGeneration", "anyres tiles"),
])
def test_unserved_families_are_refused_at_start_up(tmp_path, family, arch, reason):
    from tokenprune.testing.tiny import make_model

    make_model(family, seed=0).save_pretrained(tmp_path)
    res = run_vllm(tmp_path, CFG, timeout=300)
    out = res["stdout"] + res["stderr"]
    assert res["rc"] != 0 and res["result"] is None
    assert f"{arch} cannot be pruned under vLLM" in out and reason in out, out[-3000:]
