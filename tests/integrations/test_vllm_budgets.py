"""Per-request budgets of the vLLM plugin (the parts without vLLM): validation naming the field, the request's budget
replacing the server's, and the model's selection with the processor's count equal to the config's own."""
import pytest
import torch

from tokenprune import PruneConfig
from tokenprune.errors import ConfigError
from tokenprune.integrations.vllm.budgets import KEY, request_config, strip, with_keep
from tokenprune.integrations.vllm.common import num_kept, select

SERVER = PruneConfig.from_dict({"stages": [{"at": "pre_llm", "keep": 64, "scorer": "norm", "selector": "maxmin"}],
                                "seed": 3})


def test_no_request_budget_is_the_server_config():
    assert request_config(SERVER, {}) is SERVER
    assert request_config(SERVER, {"other": 1}) is SERVER
    assert request_config(SERVER, {KEY: {}}) is SERVER


@pytest.mark.parametrize("keep, counts", [(16, [16, 16]), (0.5, [288, 50]), (1.0, [576, 100])])
def test_request_budget_replaces_the_server_keep_only(keep, counts):
    cfg = request_config(SERVER, {KEY: {"keep": keep}, "size": 1})
    st = cfg.stages[0]
    assert (st.keep, st.scorer, st.selector, cfg.seed) == (keep, "norm", "maxmin", 3)
    assert [num_kept(n, cfg) for n in (576, 100)] == counts


@pytest.mark.parametrize("value, message", [
    (64, "must be an object"),
    ({"keep": 0}, "mm_processor_kwargs.tokenprune.keep"),
    ({"keep": -3}, "mm_processor_kwargs.tokenprune.keep"),
    ({"keep": 1.5}, "mm_processor_kwargs.tokenprune.keep"),
    ({"keep": True}, "mm_processor_kwargs.tokenprune.keep must be an int"),
    ({"keep": "64"}, "mm_processor_kwargs.tokenprune.keep must be an int"),
    ({"keep": 64, "scorer": "attention"}, "unknown field(s) 'scorer'"),
])
def test_bad_request_budgets_name_the_field(value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        request_config(SERVER, {KEY: value})


def test_a_budget_above_the_item_names_the_request_field():
    cfg = request_config(SERVER, {KEY: {"keep": 1000}})
    with pytest.raises(ConfigError, match="mm_processor_kwargs.tokenprune.keep=1000 asks for 1000 tokens"):
        num_kept(576, cfg, "mm_processor_kwargs.tokenprune.keep")


def test_strip_removes_only_tokenprune():
    assert strip({KEY: {"keep": 1}, "size": 2}) == {"size": 2}
    kw = {"size": 2}
    assert strip(kw) is kw


def test_model_selection_with_the_processor_count_equals_the_config():
    feats = torch.randn(100, 16)
    for keep in (7, 0.3):
        cfg = request_config(SERVER, {KEY: {"keep": keep}})
        k = num_kept(100, cfg)
        rows, index = select(feats, SERVER, keep=k)  # what the model runs with the processor's count
        ref_rows, ref_index = select(feats, cfg)
        assert index.tolist() == ref_index.tolist() and torch.equal(rows, ref_rows) and len(index) == k
    assert with_keep(with_keep(SERVER, 5), 5).stages[0].keep == 5
