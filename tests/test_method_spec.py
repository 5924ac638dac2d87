"""Method specs, the family table and preset schedules: one declaration read by every consumer."""
import importlib.util
import pathlib

import pytest
import torch

import tokenprune as tp
from tokenprune import ConfigError, PruneConfig, Stage
from tokenprune.adapters import ADAPTERS, Adapter, register
from tokenprune.cli import main
from tokenprune.integrations.vllm.common import check as vllm_check
from tokenprune.registry import SCORERS

from .conftest import batch, tiny

PLUGIN = pathlib.Path(__file__).parent / "plugins" / "centre_scorer.py"


@pytest.fixture(scope="module")
def external_scorer():
    spec = importlib.util.spec_from_file_location("centre_scorer", PLUGIN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod
    SCORERS.remove("test_centre")
    SCORERS.remove("test_text_overlap")


def test_external_scorer_everywhere(external_scorer, capsys):
    """One file outside the package: listed by info, validated by PruneConfig, run by apply(), judged by vLLM."""
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "test_centre" in out and "test_text_overlap" in out
    with pytest.raises(ConfigError, match=r"Stage.sharpness: got -1; allowed: a number >= 0"):
        Stage("pre_llm", keep=2, scorer="test_centre", sharpness=-1)
    with pytest.raises(ConfigError, match="Stage.alpha: not an option"):
        Stage("pre_llm", keep=2, scorer="test_centre", alpha=1)
    cfg = PruneConfig([Stage("pre_llm", keep=2, scorer="test_centre", sharpness=2.0)])
    model = tiny("llava")
    inputs = batch("llava", model)
    with tp.pruned(model, cfg) as h:
        model(**inputs)
        kept = h.stats.stages[0].kept_indices
    assert kept[0] == [[7, 8]]  # of 16 tokens in raster order, the two nearest the middle (t = 7/15, 8/15)
    assert vllm_check(cfg).scorer == "test_centre"  # servable: query-free, needs only features
    with pytest.raises(ConfigError, match="vLLM plugin: scorer 'test_text_overlap' needs the text"):
        vllm_check(PruneConfig([Stage("pre_llm", keep=2, scorer="test_text_overlap")]))


def test_registering_a_method_twice_raises():
    with pytest.raises(ValueError, match="registered twice"):
        SCORERS.register("norm")(lambda view: view.features.norm(dim=-1))


def test_servable_follows_options():
    """debiased_attention is query-dependent on LM attention, query-free on vision-tower attention (without the
    padding mask, which vLLM's embedding stage does not compute)."""
    with pytest.raises(ConfigError, match="needs the text"):
        vllm_check(PruneConfig([Stage("pre_llm", keep=2, scorer="debiased_attention")]))
    with pytest.raises(ConfigError, match="needs padding"):
        vllm_check(PruneConfig([Stage("pre_llm", keep=2, scorer="debiased_attention", base="cls_attention")]))
    vllm_check(PruneConfig([Stage("pre_llm", keep=2, scorer="debiased_attention", base="cls_attention",
                                  padding=False)]))
    with pytest.raises(ConfigError, match="proportional=True"):
        vllm_check(PruneConfig([Stage("pre_llm", keep=2, scorer="norm", reducer="merge", proportional=True)]))
    vllm_check(PruneConfig([Stage("pre_llm", keep=2, scorer="norm", reducer="merge")]))


def test_family_registered_twice_raises():
    class Again(Adapter):
        model_types = ("llava",)
        hf_class = "LlavaForConditionalGeneration"

    with pytest.raises(ValueError, match="already has an adapter"):
        register(Again)
    assert ADAPTERS["llava"].__name__ == "LlavaAdapter"


def test_family_table_drives_consumers():
    from tokenprune.integrations.vllm.plugin import architectures
    from tokenprune.testing.tiny import FAMILIES

    assert set(FAMILIES) == set(ADAPTERS)
    assert set(architectures()) == {"LlavaForConditionalGeneration", "Qwen2VLForConditionalGeneration",
                                    "Qwen2_5_VLForConditionalGeneration"}
    for name, a in ADAPTERS.items():
        assert type(tiny(name)).__name__ == a.hf_class


def _kept_per_stage(h):
    return [[k for row in s.kept_indices for k in (len(i) for i in row)] for s in h.stats.stages]


def test_preset_keep_scales_the_schedule(family):
    """pyramiddrop keeps ``keep`` at its last stage on every family, ratios 4:2:1 before (capped at what an item
    has); keep=[a, b, c] sets each stage; apply() and PruneConfig.from_preset agree."""
    model = tiny(family)
    inputs = batch(family, model)
    layers = model.config.get_text_config().num_hidden_layers
    cfg = PruneConfig.from_preset("pyramiddrop", num_layers=layers, keep=2)
    assert [s.keep for s in cfg.stages] == [8, 4, 2] and [s.clip for s in cfg.stages] == [True, True, False]
    with tp.pruned(model, "pyramiddrop", keep=2) as h:
        assert h.config == cfg
        model(**inputs)
        per_stage = _kept_per_stage(h)
    assert set(per_stage[-1]) == {2}
    assert all(k == 4 for k in per_stage[1])
    with tp.pruned(model, "pyramiddrop", keep=[6, 3, 1]) as h:
        model(**inputs)
        per_stage = _kept_per_stage(h)
    assert [set(k) for k in per_stage] == [{6}, {3}, {1}]
    assert [s.keep for s in PruneConfig.from_preset("pyramiddrop", keep=0.1).stages] == [0.4, 0.2, 0.1]


def test_preset_keep_errors():
    with pytest.raises(ConfigError, match="keep: got 2 budgets"):
        PruneConfig.from_preset("pyramiddrop", keep=[4, 2])
    with pytest.raises(ConfigError, match="at: preset 'pyramiddrop' places 3 stages"):
        PruneConfig.from_preset("pyramiddrop", layer=2)
    with pytest.raises(ConfigError, match="Stage.clip"):
        Stage(2, keep=4, clip="yes")


def test_eval_harness_uses_the_preset_schedule():
    from tokenprune.apps.quality import preset_config

    assert preset_config("pyramiddrop", 64, num_layers=32) == PruneConfig.from_preset("pyramiddrop", num_layers=32,
                                                                                        keep=64)


def test_media_items_carry_grids_and_frames():
    """Items are modality-neutral: a Qwen video item knows its (t, h, w) token grid and frames, an image its grid."""
    from tokenprune.testing.tiny import Item, make_inputs

    model = tiny("qwen2_vl")
    inputs = make_inputs("qwen2_vl", model, [[Item((56, 84)), Item((56, 56), video=True)]])
    with tp.pruned(model, PruneConfig([Stage("pre_llm", keep=1.0)])) as h:
        model(**inputs)
        items = h._runtime.last_state.images[0]
    assert [(im.modality, im.grid, im.frames, im.orig_len) for im in items] == [
        ("image", (1, 2, 3), 1, 6), ("video", (items[1].grid[0], 2, 2), items[1].grid[0], 4 * items[1].grid[0])]
    assert items[1].frame_of(torch.arange(items[1].orig_len)).tolist() == [
        f for f in range(items[1].frames) for _ in range(4)]


def test_stage_timing_callback(family):
    model = tiny(family)
    inputs = batch(family, model)
    seen = []
    with tp.pruned(model, "pyramiddrop", keep=2) as h:
        off = h.on_stage(seen.append)
        model(**inputs)
        off()
        model(**inputs)
    assert [(t.stage_index, t.at) for t in seen] == [(0, 1), (1, 2), (2, 3)]
    assert all(t.ms > 0 for t in seen)


def test_pyramiddrop_keep_64_on_576_token_images():
    """On the embedded model (576 tokens per image): keep=64 keeps 256, 128, 64 at the three stages."""
    from tokenprune.apps.quality import prepare
    from tokenprune.shapesvqa import model as M

    model, processor = M.load("embedded")
    _, inputs = prepare(processor, "test", 2, 2)
    with tp.pruned(model, "pyramiddrop", keep=64) as h:
        model(**inputs[0])
        per_stage = [s.kept for s in h.stats.stages]
    assert per_stage == [[256, 256], [128, 128], [64, 64]]
