"""``tokenprune tune``: ranks candidates on calibration questions and writes a config that ``apply`` takes."""
import json

import pytest
import torch

import tokenprune as tp
from tokenprune.apps.tune import Tune, candidates, run_tune
from tokenprune.cli import main
from tokenprune.errors import InputError


def test_candidates_cover_presets_and_layers():
    labels = [c[0] for c in candidates(Tune(presets=["fastv", "divprune"], layers=[1, 3, 99]), num_layers=4)]
    assert labels == ["fastv", "fastv@L1", "fastv@L3", "divprune"]  # layer 2 is fastv's own; 99 is out of range


def test_tune_on_the_embedded_model_writes_a_config_apply_takes(tmp_path):
    out = tmp_path / "auto.yaml"
    assert main(["tune", "--keep", "64", "--calib", "16", "--presets", "divprune,random,fastv", "--out",
                 str(out)]) == 0
    ranking = json.loads((tmp_path / "auto.yaml.ranking.json").read_text())
    scores = [r["score"] for r in ranking["rows"]]
    assert ranking["mode"] == "answers" and scores == sorted(scores, reverse=True) and len(scores) == 3
    from tokenprune.shapesvqa import model as M

    model, processor = M.load("embedded")
    cfg = tp.PruneConfig.from_file(str(out))
    assert cfg.to_dict() == ranking["best"] and cfg.stages[-1].keep == 64
    inputs = processor(images=[__import__("PIL.Image").Image.new("RGB", (336, 336))],
                       text=[M.prompt(processor, "count the shapes .")], return_tensors="pt")
    with torch.no_grad():
        h = tp.apply(model, str(out))
        model(**inputs)
        assert h.stats.stages[-1].kept == [64]
        h.remove()


def test_agreement_mode_needs_no_answers(tmp_path):
    """A user-style JSONL without answers, through the generic path (chat template, generate): candidates are
    ranked by agreement with the dense model's own answers."""
    from tokenprune.shapesvqa.data import examples
    from tokenprune.shapesvqa.model import EMBEDDED_DIR

    with open(tmp_path / "data.jsonl", "w") as f:
        for i, e in enumerate(examples("val", 6)):
            e.image().save(tmp_path / f"{i}.png")
            f.write(json.dumps({"image": f"{i}.png", "question": e.qa.question}) + "\n")
    res = run_tune(Tune(model=str(EMBEDDED_DIR), keep=0.5, calib=6, data=str(tmp_path), presets=["divprune", "random"],
                        batch=3, max_new_tokens=2))
    assert res["mode"] == "agreement" and res["dense_score"] == 1.0
    assert all(0 <= r["score"] <= 1 for r in res["rows"])
    with pytest.raises(InputError, match="mode: 'answers' needs an answer"):
        run_tune(Tune(model=str(EMBEDDED_DIR), calib=2, data=str(tmp_path), presets=["random"], mode="answers"))


def test_bad_input(tmp_path):
    for t, field in [(Tune(keep=0), "keep"), (Tune(presets=["nope"]), "presets"), (Tune(mode="best"), "mode"),
                     (Tune(calib=0), "calib")]:
        with pytest.raises(InputError, match=field):
            run_tune(t)
    with pytest.raises(InputError, match="data"):
        run_tune(Tune(data=str(tmp_path / "missing.jsonl"), presets=["random"]))
    with pytest.raises(tp.ConfigError, match="is not a file"):
        tp.PruneConfig.from_file(str(tmp_path / "none.yaml"))
