"""The shipped Qwen2-VL ShapesVQA checkpoint: loads offline, answers recorded images and clips, drives the demo."""
import json

import pytest
import torch

from tokenprune.apps.demo import has_embedded, run_embedded_demo
from tokenprune.shapesvqa import embedded as E
from tokenprune.shapesvqa.qwen import EMBEDDED_QWEN_DIR

pytestmark = pytest.mark.skipif(not has_embedded("embedded-qwen"), reason="the Qwen checkpoint is not in this checkout")


def test_checkpoint_is_small_and_loads_offline():
    assert sum(f.stat().st_size for f in EMBEDDED_QWEN_DIR.iterdir()) <= 20 * 2**20
    model, proc = E.load("embedded-qwen")
    assert model.config.model_type == "qwen2_vl" and model.dtype == torch.float32
    image = E.batch_inputs(proc, E.split_examples(proc, "test", 1))
    clip = E.batch_inputs(proc, E.split_examples(proc, "clips-test", 1))
    assert 126 <= E.visual_tokens(model, [image]) <= 160
    assert E.visual_tokens(model, [clip]) == 324


@pytest.mark.parametrize("split", ["test", "clips-test"])
def test_answers_known_samples(split):
    """Samples the exported model answers with a clear logit margin (recorded at export), every question kind."""
    known = json.loads((EMBEDDED_QWEN_DIR / "known_answers.json").read_text())[split]
    model, proc = E.load("embedded-qwen")
    exs = {e.index: e for e in E.split_examples(proc, split, max(k["index"] for k in known) + 1)}
    chosen = [exs[k["index"]] for k in known]
    assert len({e.qa.kind for e in chosen}) == (3 if split == "clips-test" else 2)
    with torch.no_grad():
        logits = model(**E.batch_inputs(proc, chosen)).logits[:, -1]
    got = proc.tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
    assert got == [k["answer"] for k in known] == [e.qa.answer for e in chosen]


def test_video_demo_on_the_qwen_model(tmp_path):
    rows = run_embedded_demo(repeats=1, out_dir=str(tmp_path), samples=2, model_name="embedded-qwen", video=True,
                             methods=[("divprune", dict(keep=0.25))])
    assert len(rows) == 2 and rows[0].flops_ratio == 1.0 and rows[1].flops_ratio < 1
    assert rows[1].visual_tokens < rows[0].visual_tokens
    assert all(len(r.answers) == 2 for r in rows)
    assert "divprune_0.25.png" in [p.name for p in tmp_path.iterdir()]
