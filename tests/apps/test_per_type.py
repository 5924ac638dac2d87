"""evals.shapesvqa.per_type: accuracy per kind and type agrees with answering the same questions one by one."""
import pytest
import torch

pytest.importorskip("transformers")


def test_per_type_counts_every_question_once():
    from transformers import Qwen2VLForConditionalGeneration

    from evals.shapesvqa.per_type import per_type
    from tokenprune.shapesvqa import qwen as Q
    from tokenprune.shapesvqa.data import examples

    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration.from_pretrained("tokenprune/assets/shapesvqa_qwen").eval()
    proc = Q.make_processor()
    got = per_type(model, proc, "test", 6, batch=4)
    exs = examples("test", 6, sizes=list(Q.IMAGE_SIZES))
    one = [Q.answer(model, proc, [e.qa.question], images=[e.image()])[0] == e.qa.answer for e in exs]
    assert got["all"] == sum(one) / 6
    for key in {e.qa.kind for e in exs} | {e.qa.type for e in exs}:
        sel = [h for e, h in zip(exs, one) if key in (e.qa.kind, e.qa.type)]
        assert got[key] == sum(sel) / len(sel), key
