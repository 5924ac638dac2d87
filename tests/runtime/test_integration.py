"""Videos, mixed image+video prompts, bf16, and coexistence with accelerate hooks."""
import pytest
import torch

import tokenprune as tp
from tokenprune import PruneConfig, Stage
from tokenprune.testing.tiny import Item, make_inputs, make_model

from ..conftest import GEN, batch, tiny
from ..reference import capture_lm_inputs, reference_row_logits


# Qwen3-VL's processor lays a video out frame by frame with timestamps; the tiny input builder does not (yet)
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("at", ["pre_llm", 2])
def test_video_and_image_in_one_prompt(family, at):
    model = tiny(family)
    inputs = make_inputs(family, model, [[Item((56, 84), video=True), Item((112, 112))], [Item((112, 56))]])
    lm_kwargs = capture_lm_inputs(model, inputs)
    with tp.pruned(model, PruneConfig([Stage(at, keep=0.5)])) as h:
        out = model(**inputs).logits
        st, stats = h._runtime.last_state, h.stats
        cached = model.generate(**inputs, max_new_tokens=8, do_sample=False, **GEN)
        nocache = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False, **GEN)
    assert [im.modality for im in st.images[0]] == ["video", "image"]
    vid, img = (inputs["input_ids"][0] == 151).sum().item(), (inputs["input_ids"][0] == 150).sum().item()
    assert stats.stages[0].kept[0] == round(vid / 2) + round(img / 2)
    seg = st.segments[-1]
    for row in range(2):
        ref = reference_row_logits(model, lm_kwargs, row, [(seg.start_layer, seg.dense_idx[row][seg.valid[row]])])
        torch.testing.assert_close(out[row][seg.valid[row]], ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(cached, nocache)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_bfloat16(family):
    model = make_model(family, dtype=torch.bfloat16)
    inputs = batch(family, model)
    inputs = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in inputs.items()}
    dense = model.generate(**inputs, max_new_tokens=4, do_sample=False, **GEN)
    with tp.pruned(model, "fastv", keep=1.0):
        assert torch.equal(model.generate(**inputs, max_new_tokens=4, do_sample=False, **GEN), dense)
    with tp.pruned(model, "fastv", keep=0.25, layer=1) as h:
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False, **GEN)
        assert h.stats.stages[0].kept[0] < h.stats.stages[0].visual_in[0]
    assert out.shape == dense.shape


def test_coexists_with_accelerate_hooks():
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    class Count(ModelHook):
        calls = 0

        def pre_forward(self, module, *args, **kwargs):
            Count.calls += 1
            return args, kwargs

    model = make_model("llava", seed=1)
    inputs = batch("llava", model)
    lm = model.model.language_model
    add_hook_to_module(lm, Count())
    dense = model(**inputs).logits
    with tp.pruned(model, "fastv", keep=0.5, layer=1) as h:
        model.generate(**inputs, max_new_tokens=3, **GEN)
        assert h.stats.stages[0].kept[0] == 8
    assert hasattr(lm, "_hf_hook") and Count.calls >= 4
    assert torch.equal(model(**inputs).logits, dense)
    remove_hook_from_module(lm)
