"""``tokenprune eval``: a well-formed results file on a 20-sample subset; bad input writes nothing."""
import csv
import json

import pytest

from tokenprune.cli import main
from tokenprune.apps.quality import Sweep, preset_config, run_sweep
from tokenprune.shapesvqa import model as M


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    M.make_model(seed=1, layers=4, hidden=64, heads=2, kv_heads=1, inter=128).save_pretrained(d)
    M.make_processor().save_pretrained(d)
    return d


def test_eval_writes_results_csv_and_plots(model_dir, tmp_path, capsys):
    out = tmp_path / "res" / "results.json"
    rc = main(["eval", "--model", str(model_dir), "--presets", "fastv,divprune,pyramiddrop", "--keep", "64,144",
               "--split", "test", "--limit", "20", "--layer", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["complete"] and res["limit"] == 20 and len(res["rows"]) == 6
    for r in res["rows"]:
        assert 0 <= r["accuracy"] <= 1 and r["ms_per_sample"] > 0 and 0 < r["flops_ratio"] < 1
        assert set(r) >= {"preset", "keep", "localized", "global", "retention", "speedup", "stages", "by_type"}
        assert sum(t["n"] for t in r["by_type"].values()) == 20
        hits = sum(round(t["accuracy"] * t["n"]) for t in r["by_type"].values())
        assert hits == round(r["accuracy"] * 20)
    assert res["rows"][0]["stages"][0]["at"] == 1  # --layer moved fastv
    rows = list(csv.reader(open(tmp_path / "res" / "results.csv")))
    assert rows[1][0] == "dense" and len(rows) == 8
    assert (tmp_path / "res" / "results_acc_vs_tokens.png").is_file()
    assert not (tmp_path / "res" / "results.json.partial").exists()


def test_multi_stage_presets_keep_the_budget_at_the_last_stage():
    cfg = preset_config("pyramiddrop", 64, num_layers=4)
    assert [s.keep for s in cfg.stages] == [256, 128, 64]
    assert preset_config("fastv", 32, 4).stages[0].keep == 32


def test_accuracy_is_deterministic(model_dir):
    sw = Sweep(model=str(model_dir), presets=["random"], keeps=[32], limit=8, batch=4)
    a, b = run_sweep(sw), run_sweep(sw)
    assert a["dense"]["accuracy"] == b["dense"]["accuracy"] and a["rows"][0]["accuracy"] == b["rows"][0]["accuracy"]


@pytest.mark.parametrize("args, message", [
    (["--model", "/nonexistent"], "not a saved model folder"), (["--presets", "fastv,nope"], "nope"),
    (["--keep", "577"], "--keep"), (["--keep", "0"], "--keep"), (["--limit", "0"], "empty"),
    (["--split", "dev"], "--split"), (["--keep", "a"], "--keep"),
])
def test_eval_bad_input(model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "r.json"
    base = ["eval", "--model", str(model_dir), "--presets", "fastv", "--keep", "64", "--limit", "4", "--out", str(out)]
    assert main(base + args) == 2
    assert message in capsys.readouterr().out
    assert not out.exists() and not (tmp_path / "r.json.partial").exists()


def test_layer_override_moves_only_single_layer_presets():
    assert preset_config("fastv", 32, 4, layer=3).stages[0].at == 3
    assert preset_config("entropyprune", 32, 4, layer=3).stages[0].at == "auto"
    assert preset_config("divprune", 32, 4, layer=3).stages[0].at == "pre_llm"
