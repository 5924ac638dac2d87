"""The vLLM plugin on Qwen2-VL and Qwen2.5-VL (M-RoPE): K placeholders per image, kept tokens at their original
(t, h, w) positions with the following text where it is in the dense prompt — checked by greedy parity with
tokenprune's Hugging Face path — and keep-all equal to stock vLLM."""
import pytest
import torch

from .conftest import check_budget_parts, hf_generate, part, run_vllm, same_as_hf
from .qwen_inputs import prompts, save_model, sweep_prompts

pytestmark = pytest.mark.vllm
FAMILIES = ["qwen2_vl", "qwen2_5_vl"]
CFG = {"stages": [{"at": "pre_llm", "keep": 0.5, "scorer": "norm", "selector": "maxmin"}]}


@pytest.fixture(scope="module", params=FAMILIES)
def qwen_dir(request, tmp_path_factory):
    return save_model(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def stock(qwen_dir):
    """Stock vLLM (plugin off) on the four prompts, shared by the tests that compare with it."""
    res = run_vllm(qwen_dir, None, kind="qwen")
    assert res["rc"] == 0, res["stderr"]
    return res["result"]


def hf_greedy(model_dir, config, n=4, max_tokens=4, long=False, pairs=None):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    proc = AutoProcessor.from_pretrained(model_dir)
    inputs = [proc(images=[img] if img else None, text=[text], return_tensors="pt")
              for text, img in (pairs if pairs is not None else prompts(n, long=long))]
    return hf_generate(model, config, inputs, max_tokens)


def test_vision_start_at_every_chunk_offset(qwen_dir):
    """Chunked prefill in 8-token steps with ``<|vision_start|>`` at every offset of a step — including a step that
    ends one past it, which crashed the engine core in vLLM's EVS position update: the answers equal the HF path."""
    res = run_vllm(qwen_dir, CFG, kind="qwen_sweep", questions=8, chunk=8, sequential=True)
    assert res["rc"] == 0, res["stdout"][-3000:] + res["stderr"][-3000:]
    same_as_hf(res["result"], hf_greedy(qwen_dir, CFG, pairs=sweep_prompts(8)))


def test_vision_start_at_every_prefix_cache_offset(qwen_dir):
    """Each prompt twice with different images (prefix caching, 32-token blocks: vLLM-CPU's smallest), ``<|vision_start|>`` at every
    offset of the first block: the cache hit ends before, at, or one past it; the answers equal the HF path."""
    res = run_vllm(qwen_dir, CFG, kind="qwen_sweep", questions=32, twice=True, sequential=True)
    assert res["rc"] == 0, res["stdout"][-3000:] + res["stderr"][-3000:]
    again = res["result"]["again"]
    assert max(again["cached_tokens"]) >= 32  # the first block was a hit where the image starts after it
    same_as_hf(res["result"], hf_greedy(qwen_dir, CFG, pairs=sweep_prompts(32)))
    same_as_hf(again, hf_greedy(qwen_dir, CFG, pairs=sweep_prompts(32, seed=1)))


def test_pruned_prompt_tokens_and_per_request_budgets_match_hf(qwen_dir, stock):
    """One engine (server budget: half of each image) answering, concurrently, the prompts with no request budget,
    with ``{"keep": 2}`` and with ``{"keep": 1.0}``: each prompt shrinks by its own budget (images of 16, 12 and 8
    LLM tokens; a text-only prompt passes) and its tokens and log-probabilities equal the HF path's with that budget
    (a wrong M-RoPE position would move them)."""
    res = run_vllm(qwen_dir, CFG, kind="qwen", budgets=[None, {"keep": 2}, {"keep": 1.0}])
    assert res["rc"] == 0, res["stderr"]
    check_budget_parts(res["result"], stock, lambda cfg: hf_greedy(qwen_dir, cfg), CFG, 2, [8, 6, 0, 4],
                       [14, 10, 0, 6])


def test_keep_all_equals_stock_vllm(qwen_dir, stock):
    keep_all = run_vllm(qwen_dir, {"stages": [{"at": "pre_llm", "keep": 1.0, "scorer": "norm"}]}, kind="qwen")
    assert keep_all["rc"] == 0, keep_all["stderr"]
    assert keep_all["result"] == stock


def test_chunked_prefill_and_prefix_cache_keep_positions(qwen_dir):
    """Prefill in 5-token chunks (the kept image rows and the text after them arrive in later steps than the image
    starts, so their M-RoPE positions come from vLLM's recompute), then the same prompts again in the same engine:
    the prefix cache holds each whole (pruned) image, the encoder does not run and the text after the image is
    placed by the admission positions alone. The HF path's tokens and log-probabilities both times."""
    res = run_vllm(qwen_dir, CFG, kind="qwen_long", chunk=5, twice=True)
    assert res["rc"] == 0, res["stderr"]
    again = res["result"]["again"]
    assert min(again["cached_tokens"]) >= 32
    hf = hf_greedy(qwen_dir, CFG, long=True)
    for run in (res["result"], again):
        same_as_hf(run, hf)


def test_cls_attention_is_refused_at_start_up(qwen_dir):
    res = run_vllm(qwen_dir, {"stages": [{"at": "pre_llm", "keep": 0.5, "scorer": "cls_attention"}]}, kind="qwen",
                   timeout=300)
    assert res["rc"] != 0 and res["result"] is None
    assert "served on vLLM's LLaVA only" in res["stdout"] + res["stderr"]


def hf_video_inputs(model_dir, n):
    from transformers import AutoProcessor

    from .qwen_inputs import video_prompts

    proc = AutoProcessor.from_pretrained(model_dir)
    return [proc(videos=[v], text=[t], return_tensors="pt", do_sample_frames=False)
            for t, v in video_prompts(n)]


def test_videos_pruned_with_positions_like_hf(qwen_dir):
    """Videos of 2 and 3 temporal patches (32 / 48 LLM tokens): each keeps the server's half, or a request's 4, or
    all of it (keep 1.0: the dense model), with its kept tokens at their (t, h, w) positions — the HF path's tokens
    and log-probabilities (Qwen2.5-VL: time positions scaled by ``second_per_grid_ts``)."""
    from transformers import AutoModelForImageTextToText

    res = run_vllm(qwen_dir, CFG, kind="qwen_video", budgets=[None, {"keep": 4}, {"keep": 1.0}])
    assert res["rc"] == 0, res["stdout"][-3000:] + res["stderr"][-3000:]
    inputs = hf_video_inputs(qwen_dir, 4)
    dense_len = [x["input_ids"].shape[1] for x in inputs]
    model = AutoModelForImageTextToText.from_pretrained(qwen_dir, dtype=torch.float32).eval()
    for i, (cfg, kept) in enumerate([(CFG, [16, 24, 16, 24]), ({"stages": [{**CFG["stages"][0], "keep": 4}]}, [4] * 4),
                                     (None, [32, 48, 32, 48])]):
        got = part(res["result"], i, 4)
        assert got["prompt_tokens"] == [d - (v - k) for d, v, k in zip(dense_len, [32, 48, 32, 48], kept)]
        same_as_hf(got, hf_generate(model, cfg, inputs, 4))
