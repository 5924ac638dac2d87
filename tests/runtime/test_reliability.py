"""Regression tests for defects found by adversarial use (issue: silent wrong results and a leak)."""
import copy
import gc
import pickle
import threading
import weakref

import pytest
import torch

import tokenprune as tp
from tokenprune import ConfigError, InputError, PruneConfig, Stage
from tokenprune.testing.tiny import make_model

from ..conftest import GEN, batch, tiny

PRE = PruneConfig([Stage("pre_llm", keep=0.5, scorer="norm")])
K2 = PruneConfig([Stage(2, keep=0.5)])


def _turn(model, prev, seed=7, n=3):
    g = torch.Generator().manual_seed(seed)
    new = torch.randint(3, 140, (prev.shape[0], n), generator=g)
    return torch.cat([prev, new], 1)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_continuing_from_a_pre_llm_pruned_cache_is_refused(family):
    """The cache of a pre_llm-pruned call is shorter than the conversation: generate() would re-feed part of the
    prompt as new tokens. Refused, never silently wrong."""
    model = tiny(family)
    inputs = batch(family, model)
    with tp.pruned(model, PRE):
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True, **GEN)
        ids = _turn(model, out.sequences)
        mask = torch.cat([inputs["attention_mask"], torch.ones(ids.shape[0], ids.shape[1] -
                                                              inputs["attention_mask"].shape[1], dtype=torch.long)], 1)
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        with pytest.raises(InputError, match="past_key_values"):
            model.generate(input_ids=ids, attention_mask=mask, past_key_values=out.past_key_values,
                           max_new_tokens=3, do_sample=False, **extra, **GEN)


def test_continuing_from_an_in_llm_pruned_cache_is_exact():
    """A stage inside the LM leaves layer 0's cache dense: continuing a conversation through generate() equals
    feeding the new turn token by token through the same pruned cache."""
    model = tiny("llava")
    inputs = batch("llava", model)
    with tp.pruned(model, K2):
        def first_turn():
            return model.generate(**inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True, **GEN)

        out = first_turn()
        ids = _turn(model, out.sequences)
        mask = torch.ones_like(ids)
        mask[:, : inputs["attention_mask"].shape[1]] = inputs["attention_mask"]
        cont = model.generate(input_ids=ids, attention_mask=mask, past_key_values=out.past_key_values,
                              max_new_tokens=1, do_sample=False, output_logits=True, return_dict_in_generate=True,
                              **GEN)
        ref = first_turn()
        cache, n = ref.past_key_values, ref.sequences.shape[1]
        for j in range(n - 1, ids.shape[1]):  # the last generated token is not in the cache yet, then the new turn
            m = mask[:, : j + 1]
            pos = (m.cumsum(-1) - 1).clamp(min=0)[:, -1:]  # what generate() passes
            logits = model(input_ids=ids[:, j:j + 1], attention_mask=m, position_ids=pos, past_key_values=cache,
                           use_cache=True).logits[:, -1]
    torch.testing.assert_close(cont.logits[0], logits, atol=1e-5, rtol=1e-5)


def test_assisted_generation_is_refused():
    model, draft = tiny("llava"), make_model("llava", seed=1)
    inputs = batch("llava", model)
    with tp.pruned(model, K2):
        with pytest.raises(InputError, match="assistant_model"):
            model.generate(**inputs, assistant_model=draft, max_new_tokens=4, do_sample=False, **GEN)


@pytest.mark.parametrize("selector", ["topk", "mmr", "adaptive"])
def test_text_query_with_left_padding(selector):
    """query='text' on left-padded rows: no NaN scores, and each row keeps what it keeps alone."""
    model = tiny("llava")
    inputs = batch("llava", model)
    cfg = PruneConfig([Stage(2, keep=2, query="text", selector=selector)])
    with tp.pruned(model, cfg) as h:
        model(**inputs)
        batched = h.stats.stages[0].kept_indices
        row0 = {k: v[:1] for k, v in inputs.items() if k != "pixel_values"}
        n0 = int((inputs["input_ids"][0] == 150).sum()) // 16
        row0["pixel_values"] = inputs["pixel_values"][:n0]
        width = int(row0["attention_mask"].sum())
        row0 = {k: (v[:, -width:] if k in ("input_ids", "attention_mask") else v) for k, v in row0.items()}
        model(**row0)
        alone = h.stats.stages[0].kept_indices
    assert batched[0] == alone[0]


def test_dropped_model_is_freed():
    ref = []
    for seed in range(2):
        m = make_model("llava", seed=seed)
        tp.apply(m, "fastv", keep=2, layer=1)
        ref.append(weakref.ref(m))
        del m
    gc.collect()
    assert all(r() is None for r in ref)


def test_deepcopy_of_an_attached_model_is_a_plain_model():
    model = make_model("llava")
    inputs = batch("llava", model)
    dense = model(**inputs).logits
    own_hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())  # transformers'
    h = tp.apply(model, "fastv", keep=2, layer=1)
    clone = copy.deepcopy(model)
    assert "generate" not in vars(clone)
    assert torch.equal(clone(**inputs).logits, dense)  # unpruned, its own weights
    assert clone.generate.__self__ is clone
    assert all(getattr(m, "get_image_features", None) is None or "get_image_features" not in vars(m)
               for m in clone.modules())
    h.remove()
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in clone.modules())
    assert hooks == own_hooks
    h2 = tp.apply(clone, "fastv", keep=2, layer=1)  # the copy can be pruned on its own
    h2.remove()


def test_pickling_an_attached_model_explains():
    model = make_model("llava")
    with tp.pruned(model, "fastv", keep=2, layer=1):
        with pytest.raises(tp.TokenPruneError, match="remove"):
            pickle.dumps(model)
    pickle.dumps(model)  # fine once removed


@pytest.mark.parametrize("bad, field", [
    (dict(seed=2 ** 62), "seed"), (dict(seed=-1), "seed"),
])
def test_seed_range(bad, field):
    with pytest.raises(ConfigError, match=f"PruneConfig.{field}"):
        PruneConfig([Stage("pre_llm", keep=2)], **bad)


@pytest.mark.parametrize("opts", [dict(contextual="x"), dict(contextual=1.5), dict(contextual=-1),
                                  dict(contextual=True)])
def test_merge_contextual_validated_with_any_selector(opts):
    with pytest.raises(ConfigError, match="Stage.contextual"):
        Stage("pre_llm", keep=4, scorer="norm", reducer="merge", **opts)


@pytest.mark.parametrize("opts", [dict(query="first"), dict(sinks="yes"), dict(padding=1)])
def test_debiased_options_validated(opts):
    with pytest.raises(ConfigError, match=f"Stage.{next(iter(opts))}"):
        Stage(2, keep=4, scorer="debiased_attention", **opts)


def test_random_scorer_does_not_depend_on_batch_position():
    model = tiny("llava")
    inputs = batch("llava", model)
    flip = {k: (v.flip(0) if k in ("input_ids", "attention_mask") else v) for k, v in inputs.items()}
    counts = [int((r == 150).sum()) // 16 for r in inputs["input_ids"]]
    chunks = list(torch.split(inputs["pixel_values"], counts))
    flip["pixel_values"] = torch.cat(chunks[::-1])
    with tp.pruned(model, "random", keep=2) as h:
        model(**inputs)
        a = h.stats.stages[0].kept_indices
        model(**flip)
        b = h.stats.stages[0].kept_indices
    assert a == b[::-1]


def test_two_threads_share_one_pruned_model():
    model = tiny("qwen2_vl")
    inputs = [batch("qwen2_vl", model, seed=s) for s in range(2)]
    with tp.pruned(model, "fastv", keep=2, layer=1):
        expect = [model.generate(**x, max_new_tokens=4, do_sample=False, **GEN) for x in inputs]
        got, errors = {}, []

        def work(i):
            try:
                for _ in range(6):
                    out = model.generate(**inputs[i], max_new_tokens=4, do_sample=False, **GEN)
                    got.setdefault(i, []).append(torch.equal(out, expect[i]))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and all(all(v) for v in got.values()) and len(got) == 2
