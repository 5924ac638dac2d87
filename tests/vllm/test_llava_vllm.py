"""The vLLM plugin on LLaVA: fewer prompt tokens, the same greedy tokens and log-probabilities as tokenprune's HF path
(kept tokens at their original positions — in one step, in chunks, after prefix-cache hits), keep-all equals stock
vLLM, bad configs fail at start-up."""
import pytest
import torch

from tokenprune import PruneConfig

from .conftest import check_budget_parts, hf_generate, run_vllm, same_as_hf

pytestmark = pytest.mark.vllm

CFG = {"stages": [{"at": "pre_llm", "keep": 64, "scorer": "norm", "selector": "maxmin"}]}


@pytest.fixture(scope="module")
def stock(shapes_dirs):
    """Stock vLLM (plugin off) on the four test questions: one engine run shared by the tests that compare with it."""
    res = run_vllm(shapes_dirs[1], None)
    assert res["rc"] == 0, res["stderr"]
    return res["result"]


def hf_greedy(model_dir, config, n=4, max_tokens=4, pairs=None):
    from transformers import LlavaForConditionalGeneration

    from tokenprune.shapesvqa import model as M
    from tokenprune.shapesvqa.data import examples

    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    proc = M.make_processor()
    if pairs is None:
        pairs = [(M.prompt(proc, e.qa.question), e.image()) for e in examples("test", n)]
    inputs = [proc(images=[img], text=[text], return_tensors="pt") for text, img in pairs]
    return hf_generate(model, config, inputs, max_tokens)


def test_image_at_every_chunk_and_cache_offset(shapes_dirs):
    """The image starts at every offset of an 8-token prefill chunk, then (second engine) at every offset of a
    32-token prefix-cache block with the prompts sent again with other images: the HF path's tokens and
    log-probabilities every time."""
    from .shapes_inputs import sweep_pairs

    hf_dir, vllm_dir = shapes_dirs
    res = run_vllm(vllm_dir, CFG, questions=8, chunk=8, kind="shapes_sweep", sequential=True)
    assert res["rc"] == 0, res["stdout"][-3000:] + res["stderr"][-3000:]
    same_as_hf(res["result"], hf_greedy(hf_dir, CFG, pairs=sweep_pairs(8)))
    res = run_vllm(vllm_dir, CFG, questions=32, twice=True, kind="shapes_sweep", sequential=True)
    assert res["rc"] == 0, res["stdout"][-3000:] + res["stderr"][-3000:]
    assert max(res["result"]["again"]["cached_tokens"]) >= 32
    same_as_hf(res["result"], hf_greedy(hf_dir, CFG, pairs=sweep_pairs(32)))
    same_as_hf(res["result"]["again"], hf_greedy(hf_dir, CFG, pairs=sweep_pairs(32, start=32)))


def test_pruned_prompt_tokens_and_per_request_budgets_match_hf(shapes_dirs, stock):
    """One engine (server budget 64) answering, concurrently, the questions with no request budget, with
    ``{"keep": 16}`` and with ``{"keep": 1.0}``: each request's prompt shrinks by its own budget and its tokens and
    log-probabilities equal the HF path's with that budget (keep 1.0: the dense model's, and stock vLLM's tokens)."""
    hf_dir, vllm_dir = shapes_dirs
    res = run_vllm(vllm_dir, CFG, budgets=[None, {"keep": 16}, {"keep": 1.0}])
    assert res["rc"] == 0, res["stderr"]
    check_budget_parts(res["result"], stock, lambda cfg: hf_greedy(hf_dir, cfg), CFG, 16, [512] * 4, [560] * 4)


def test_chunked_prefill_and_prefix_cache_keep_positions(shapes_dirs):
    """5-token prefill chunks (an image's rows and the text after it arrive in later steps than the image starts),
    then the same prompts again in the same engine, where the prefix cache holds the whole image (32-token blocks,
    60 kept tokens), so the text after it is placed without the image's rows: the HF path's tokens and
    log-probabilities every time."""
    from tokenprune.shapesvqa import model as M
    from tokenprune.shapesvqa.data import examples

    hf_dir, vllm_dir = shapes_dirs
    cfg = {"stages": [{**CFG["stages"][0], "keep": 60}]}
    res = run_vllm(vllm_dir, cfg, chunk=5, twice=True)
    assert res["rc"] == 0, res["stderr"]
    hf = hf_greedy(hf_dir, cfg)
    same_as_hf(res["result"], hf)
    proc = M.make_processor()
    ids = proc(images=[examples("test", 1)[0].image()], text=[M.prompt(proc, "x")], return_tensors="pt")["input_ids"]
    image_end = int((ids[0] == M.IMAGE).nonzero()[0]) + 60  # first token after the pruned image
    assert all(c >= image_end for c in res["result"]["again"]["cached_tokens"])  # the image came from the cache
    same_as_hf(res["result"]["again"], hf)


def test_visionzip_preset_serves_like_hf(shapes_dirs, stock):
    """VisionZip ([CLS] attention of the tower's feature layer, dominant + merged contextual tokens) inside vLLM: 64
    placeholders per image and the same greedy tokens and log-probabilities as tokenprune's HF path with the preset
    (merged tokens sit at their kept token's position)."""
    hf_dir, vllm_dir = shapes_dirs
    res = run_vllm(vllm_dir, "visionzip")
    assert res["rc"] == 0, res["stderr"]
    assert [p - 64 for p in res["result"]["prompt_tokens"]] == [p - 576 for p in stock["prompt_tokens"]]
    cfg = PruneConfig.from_preset("visionzip").to_dict()
    same_as_hf(res["result"], hf_greedy(hf_dir, cfg))


def test_keep_all_equals_stock_vllm(shapes_dirs, stock):
    _, vllm_dir = shapes_dirs
    keep_all = run_vllm(vllm_dir, {"stages": [{"at": "pre_llm", "keep": 1.0, "scorer": "norm"}]})
    assert keep_all["rc"] == 0 and keep_all["result"] == stock


@pytest.mark.parametrize("config, message", [
    ({"stages": [{"at": 2, "keep": 64}]}, "in-LLM stages"),
    ({"stages": [{"at": "pre_llm", "keep": 64, "scorer": "attention"}]}, "needs the text"),
    ({"stages": [{"at": "pre_llm", "keep": 64, "scorer": "nope"}]}, "nope"),
    ({"stages": [{"at": "pre_llm", "keep": 1000, "scorer": "norm"}]}, "asks for 1000 tokens"),
])
def test_bad_config_fails_at_start_up(shapes_dirs, config, message):
    _, vllm_dir = shapes_dirs
    res = run_vllm(vllm_dir, config, timeout=300)
    assert res["rc"] != 0 and res["result"] is None
    assert message in res["stderr"]


def test_weight_pruned_stock_export_serves(shapes_dirs, tmp_path):
    """prune-weights (stock) -> vLLM loads it (after the LLaVA weight-name fix) and answers like transformers."""
    from tokenprune.cli import main
    from tokenprune.integrations.vllm.checkpoint import llava_for_vllm

    hf_dir, _ = shapes_dirs
    out = tmp_path / "pruned"
    assert main(["prune-weights", str(hf_dir), str(out), "--mlp", "0.25", "--kv-groups", "1", "--method",
                 "wanda-sp", "--calib-samples", "2"]) == 0
    served = llava_for_vllm(out, tmp_path / "pruned_vllm")
    res = run_vllm(served, CFG)
    assert res["rc"] == 0, res["stderr"]
    same_as_hf(res["result"], hf_greedy(out, CFG))
