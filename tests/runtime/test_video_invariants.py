"""DESIGN.md §5 invariants on video: Qwen2-VL / 2.5-VL / 3-VL, a batch of two videos of different lengths and an
image-only row, left and right padding; LLaVA-OneVision the same with two videos of one length (its
``pixel_values_videos`` is one tensor, so Hugging Face batches one frame count)."""
import pytest
import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.testing.tiny import Item, make_inputs

from ..conftest import GEN, tiny
from ..reference import capture_lm_inputs, reference_row_logits

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision"]
SCHEDULES = {
    "pre_temporal": [Stage("pre_llm", keep=0.5, scorer="temporal")],
    "k2": [Stage(2, keep=0.25)],
    "k1_quota": [Stage(1, keep=0.5, scorer="frame_quota")],
    "pre+k1": [Stage("pre_llm", keep=0.75, scorer="norm", selector="maxmin"), Stage(1, keep=2)],
    "pre_maxmin_fast": [Stage("pre_llm", keep=0.5, scorer="norm", selector="maxmin_fast", dims=8)],
    "k1_mmr_fast": [Stage(1, keep=0.5, selector="mmr_fast", lam=0.3, dims=0)],
}


def video_batch(family, model, padding):
    if family == "llava_onevision":
        prompts = [[Item(video=True, frames=3)], [Item(video=True, frames=3)], [Item((56, 56))]]
        return make_inputs(family, model, prompts, padding=padding)
    prompts = [[Item((56, 56), video=True, frames=2)], [Item((56, 84), video=True, frames=3)], [Item((56, 56))]]
    return make_inputs(family, model, prompts, padding=padding)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("padding", ["left", "right"])
def test_keep_all_is_identity(family, padding):
    model = tiny(family)
    inputs = video_batch(family, model, padding)
    dense = model(**inputs).logits
    with tp.pruned(model, PruneConfig([Stage("pre_llm", keep=1.0, scorer="temporal")])):
        assert torch.equal(model(**inputs).logits, dense)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_reference_and_generate(family, padding, name):
    model = tiny(family)
    inputs = video_batch(family, model, padding)
    lm_kwargs = capture_lm_inputs(model, inputs)
    with tp.pruned(model, PruneConfig(SCHEDULES[name])) as h:
        out = model(**inputs).logits
        st = h._runtime.last_state
        grids = [[im.grid for im in row] for row in st.images]
        cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, **GEN)
        recomputed = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False, **GEN)
    want = (3, 3) if family == "llava_onevision" else (2, 3)
    assert (grids[0][0][0], grids[1][0][0]) == want  # video items carry their frames (temporal patches)
    assert torch.equal(cached, recomputed)
    final = st.segments[-1]
    for row in range(out.shape[0]):
        steps = [(s.start_layer, s.dense_idx[row][s.valid[row]]) for s in st.segments]
        ref = reference_row_logits(model, lm_kwargs, row, steps)
        torch.testing.assert_close(out[row][final.valid[row]], ref, atol=1e-5, rtol=1e-5)
