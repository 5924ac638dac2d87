"""The shipped ShapesVQA checkpoint: loads offline, answers known samples, and drives ``tokenprune demo``."""
import json

import pytest
import torch

from tokenprune.apps.demo import has_embedded, run_embedded_demo
from tokenprune.shapesvqa import model as M
from tokenprune.shapesvqa.data import examples

pytestmark = pytest.mark.skipif(not has_embedded(), reason="the embedded checkpoint is not in this checkout")
KNOWN = M.EMBEDDED_DIR / "known_answers.json"


def test_checkpoint_is_small_and_loads_offline():
    files = list(M.EMBEDDED_DIR.iterdir())
    assert sum(f.stat().st_size for f in files) <= 20 * 2**20
    model, proc = M.load("embedded")
    assert model.config.model_type == "llava" and model.dtype == torch.float32
    e = examples("test", 1)[0]
    x = proc(images=[e.image()], text=[M.prompt(proc, e.qa.question)], return_tensors="pt")
    assert int((x["input_ids"] == model.config.image_token_id).sum()) == 576


def test_answers_known_samples():
    """Samples whose answer the exported model gives with a clear logit margin (recorded at export)."""
    known = json.loads(KNOWN.read_text())
    model, proc = M.load("embedded")
    exs = {e.index: e for e in examples("test", max(k["index"] for k in known) + 1)}
    chosen = [exs[k["index"]] for k in known]
    got = M.answer(model, proc, [e.image() for e in chosen], [e.qa.question for e in chosen])
    assert got == [k["answer"] for k in known] == [e.qa.answer for e in chosen]


def test_demo_on_the_embedded_model(tmp_path):
    rows = run_embedded_demo(repeats=1, out_dir=str(tmp_path), samples=4,
                             methods=[("fastv", dict(keep=64, layer=2)), ("divprune", dict(keep=64))])
    assert [r.visual_tokens for r in rows] == [576, 64, 64]
    assert rows[0].flops_ratio == 1.0 and all(r.flops_ratio < 1 for r in rows[1:])
    assert all(len(r.answers) == 4 and 0 <= r.correct <= 4 for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["divprune_64.png", "fastv_64.png"]
