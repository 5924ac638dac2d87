"""Property-based tests: random configs on every family either run correctly or are refused with a
TokenPruneError naming the field — and the model gives exactly the dense logits afterwards.

Profiles: ``fast`` (default run, 25 examples per property) and ``long`` (``HYPOTHESIS_PROFILE=long``: 2,500 random
configs and 1,000 plausible ones; its own CI step).
"""
import math
import os

import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import tokenprune as tp
from tokenprune import PruneConfig, Stage, TokenPruneError
from tokenprune.registry import REGISTRIES
from tokenprune.testing.tiny import FAMILIES

from .conftest import GEN, batch, tiny

settings.register_profile("fast", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

OPTION_NAMES = sorted({o.name for r in REGISTRIES.values() for s in r.specs() for o in s.options} | {"bogus"})
ANY = st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.floats(allow_nan=True, allow_infinity=True),
                st.sampled_from(["last", "text", "attention", "cls_attention", "online", "x", ""]))
KEEP = st.one_of(st.integers(-2, 40), st.floats(-1.0, 1.5), st.sampled_from([0, 0.0, math.nan, math.inf, 2 ** 40,
                                                                          "half", None, True]))
AT = st.one_of(st.sampled_from(["pre_llm", "auto", "x", None, 1.5, True]), st.integers(-2, 6))


def _names(kind: str) -> st.SearchStrategy:
    return st.sampled_from(REGISTRIES[kind].names() + [f"no_such_{kind}"])


STAGE = st.fixed_dictionaries(
    {"at": AT, "keep": KEEP, "scorer": _names("scorer"), "selector": _names("selector"), "reducer": _names("reducer")},
    optional={"opts": st.dictionaries(st.sampled_from(OPTION_NAMES), ANY, max_size=2)})
CONFIG = st.fixed_dictionaries({"stages": st.lists(STAGE, min_size=0, max_size=3),
                                "seed": st.one_of(st.integers(0, 10), st.sampled_from([-1, 2 ** 62, "s", None]))})

_DENSE: dict = {}


def _dense(family):
    if family not in _DENSE:
        model = tiny(family)
        inputs = batch(family, model)
        _DENSE[family] = (inputs, model(**inputs).logits)
    return _DENSE[family]


def _build(cfg: dict) -> PruneConfig:
    stages = [Stage(s["at"], keep=s["keep"], scorer=s["scorer"], selector=s["selector"], reducer=s["reducer"],
                    **s.get("opts", {})) for s in cfg["stages"]]
    return PruneConfig(stages, seed=cfg["seed"])


def _names_field(err: TokenPruneError) -> bool:
    msg = str(err)
    return msg.split(":")[0].strip() != "" and ":" in msg


@given(family=st.sampled_from(FAMILIES), cfg=CONFIG)
def test_random_configs_run_or_refuse(family, cfg):
    model = tiny(family)
    inputs, dense = _dense(family)
    try:
        config = _build(cfg)
    except TokenPruneError as e:
        assert _names_field(e), str(e)
        event("refused by PruneConfig")
        return
    _run(family, model, inputs, dense, config)


def _run(family, model, inputs, dense, config) -> None:
    try:
        with tp.pruned(model, config) as h:
            out = model(**inputs).logits
            assert torch.isfinite(out).all()
            cached = model.generate(**inputs, max_new_tokens=3, do_sample=False, **GEN)
            recomputed = model.generate(**inputs, max_new_tokens=3, do_sample=False, use_cache=False, **GEN)
            assert torch.equal(cached, recomputed)
            assert h.stats is not None
        event("ran, cached == recomputed")
    except TokenPruneError as e:
        assert _names_field(e), str(e)
        event(f"refused at apply/run: {type(e).__name__}")
    assert torch.equal(model(**inputs).logits, dense)  # the model is exactly dense again


WHERE = st.lists(st.sampled_from(["pre_llm", 1, 2, 3]), min_size=1, max_size=3, unique=True).map(
    lambda xs: sorted(xs, key=lambda a: -1 if a == "pre_llm" else a))
VALID_KEEP = st.one_of(st.integers(1, 8), st.floats(0.05, 1.0))


@settings(max_examples=min(1000, settings().max_examples))  # each runs generate() twice
@given(family=st.sampled_from(FAMILIES), where=WHERE, data=st.data())
def test_plausible_configs_run_exactly(family, where, data):
    """Mostly valid schedules (known methods, budgets in range): generate() with cache equals recomputation, or a
    clear refusal (e.g. a vision-tower scorer on a family without one, a budget above an item's tokens)."""
    model = tiny(family)
    inputs, dense = _dense(family)
    keeps = sorted((data.draw(VALID_KEEP) for _ in where), key=lambda k: -k if isinstance(k, float) else -k / 100)
    stages = [dict(at=a, keep=k, scorer=data.draw(st.sampled_from(REGISTRIES["scorer"].names())),
                   selector=data.draw(st.sampled_from(REGISTRIES["selector"].names())),
                   reducer=data.draw(st.sampled_from(REGISTRIES["reducer"].names())))
              for a, k in zip(where, keeps)]
    try:
        config = PruneConfig(stages, seed=data.draw(st.integers(0, 5)))
    except TokenPruneError as e:
        assert _names_field(e), str(e)
        event("refused by PruneConfig")
        return
    _run(family, model, inputs, dense, config)
