"""The lmms-eval plugin (lmms-eval 0.7.3, its own environment: ``bash scripts/setup_lmms.sh``; run with
``.venv-lmms/bin/python -m pytest -m lmms tests/lmms_eval``)."""
import json
import os

import pytest

pytest.importorskip("lmms_eval")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from tokenprune import ConfigError, UnsupportedModelError  # noqa: E402

pytestmark = pytest.mark.lmms
LIMIT = 16
CONFIGS = {"dense": "", "fastv": "preset=fastv,keep=64,layer=2", "divprune": "preset=divprune,keep=64"}


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    from tokenprune.integrations.lmms_eval.tasks import write_tasks

    return write_tasks(tmp_path_factory.mktemp("shapesvqa"), "test", LIMIT)


def evaluate(task_dir, model_args: str, tasks=("shapesvqa",), batch_size: int = 4, stats=None) -> dict:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    args = ",".join(x for x in ["pretrained=embedded", model_args, f"stats_path={stats}" if stats else ""] if x)
    return simple_evaluate(model="tokenprune", model_args=args, tasks=list(tasks), batch_size=batch_size,
                           task_manager=TaskManager(include_path=str(task_dir)), log_samples=True)


def answers(result: dict, task: str = "shapesvqa") -> list[str]:
    samples = sorted(result["samples"][task], key=lambda s: s["doc_id"])
    return [s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"]
            for s in samples]


def harness_answers(model_args: str) -> list[str]:
    """tokenprune's in-process ShapesVQA harness (``tokenprune eval``) on the same questions."""
    from tokenprune.apps.quality import answers as harness, prepare, preset_config
    from tokenprune.api import pruned
    from tokenprune.shapesvqa import model as M

    model, processor = M.load("embedded")
    exs, inputs = prepare(processor, "test", LIMIT, 4)
    vocab = processor.tokenizer.convert_ids_to_tokens(list(range(model.config.text_config.vocab_size)))
    kw = dict(x.split("=") for x in model_args.split(",")) if model_args else {}
    with torch.no_grad():
        if not kw:
            return harness(model, inputs, vocab)[0]
        cfg = preset_config(kw["preset"], int(kw["keep"]), model.config.text_config.num_hidden_layers,
                            int(kw["layer"]) if "layer" in kw else None)
        with pruned(model, cfg):
            return harness(model, inputs, vocab)[0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_answers_as_the_in_process_harness(task_dir, name, tmp_path):
    stats = tmp_path / "stats.jsonl"
    res = evaluate(task_dir, CONFIGS[name], stats=stats)
    got = answers(res)
    expect = harness_answers(CONFIGS[name])
    assert got == expect
    acc = res["results"]["shapesvqa"]["exact_match,none"]
    truth = [json.loads(line)["answer"] for line in (task_dir / "test.jsonl").read_text().splitlines()]
    assert acc == pytest.approx(sum(g == t for g, t in zip(got, truth)) / LIMIT)
    rows = [json.loads(line) for line in stats.read_text().splitlines()]
    assert sorted(r["doc_id"] for r in rows) == list(range(LIMIT))
    if name != "dense":
        assert all(r["stages"][-1]["kept"] == 64 and r["flops_ratio"] < 1 for r in rows)


def test_batch_4_equals_batch_1(task_dir):
    cfg = CONFIGS["fastv"]
    assert answers(evaluate(task_dir, cfg, batch_size=4)) == answers(evaluate(task_dir, cfg, batch_size=1))


def test_multiple_choice_runs_through_loglikelihood(task_dir):
    res = evaluate(task_dir, CONFIGS["divprune"], tasks=("shapesvqa_mc",))
    samples = res["samples"]["shapesvqa_mc"]
    assert len(samples) == LIMIT
    assert all(len(s["filtered_resps"]) == len(s["doc"]["choices"]) for s in samples)
    assert 0.5 <= res["results"]["shapesvqa_mc"]["acc,none"] <= 1.0  # the model answers most (94% dense)


def test_bad_model_args_fail_before_loading(tmp_path):
    from tokenprune.integrations.lmms_eval.model import TokenpruneLMM

    for bad, field in [(dict(preset="nope"), "preset"), (dict(preset="fastv", keep=-3.0), "keep"),
                       (dict(preset="fastv", keep="lots"), "keep"), (dict(batch_size=0), "batch_size"),
                       (dict(keep=64), "keep/layer"), (dict(colour="red"), "model_args")]:
        with pytest.raises(ConfigError, match=field):
            TokenpruneLMM(pretrained="embedded", **bad)
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                vocab_size=50).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="model_type 'llama' is not supported"):
        TokenpruneLMM(pretrained=str(tmp_path))


def test_the_entry_point_registers_the_model():
    from lmms_eval.models import get_model

    assert get_model("tokenprune").__name__ == "TokenpruneLMM"


def test_eval_sweep_through_lmms_eval(tmp_path, capsys):
    """``tokenprune eval --backend lmms-eval``: the harness's outputs (JSON, CSV, plots) from lmms-eval runs; a task
    that fails makes the command exit non-zero."""
    from tokenprune.cli import main

    out = tmp_path / "r.json"
    assert main(["eval", "--backend", "lmms-eval", "--presets", "divprune", "--keep", "64", "--limit", "8",
                 "--batch", "4", "--model-args", "dtype=float32,max_new_tokens=1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["backend"] == "lmms-eval" and len(res["rows"]) == 1
    row = res["rows"][0]
    assert 0 <= row["accuracy"] <= 1 and row["flops_ratio"] < 0.5 and row["visual_kept"] == 64
    assert (tmp_path / "r.csv").exists()
    assert main(["eval", "--backend", "lmms-eval", "--tasks", "no_such_task", "--presets", "divprune", "--keep",
                 "64", "--limit", "2", "--out", str(tmp_path / "bad.json")]) != 0


def test_sweep_metrics_are_fractions_of_their_scale():
    from tokenprune.integrations.lmms_eval.sweep import _metric

    assert _metric({"mme_perception_score,none": 1500.0, "mme_cognition_score,none": 300.0}) == 0.75
    assert _metric({"pope_accuracy,none": 0.86, "pope_f1_score,none": 0.85}) == 0.86
    assert _metric({"videomme_perception_score,none": 65.0}) == 0.65
    with pytest.raises(Exception, match="no headline metric"):
        _metric({"bleu,none": 3.0})
