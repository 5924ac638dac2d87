"""The command line: info lists adapters and presets; the demo runs end to end."""
import subprocess
import sys

from tokenprune.cli import main
from tokenprune.apps.demo import run_demo


def test_info_lists_adapters_and_presets(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("llava", "llava_next", "llava_onevision", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "fastv", "uniform"):
        assert name in out


def test_demo_rows_are_consistent():
    rows = run_demo(repeats=1, new_tokens=2, methods=[("fastv", dict(keep=64, layer=2)), ("uniform", dict(keep=1.0))])
    assert [r.visual_tokens for r in rows] == [576, 64, 576]
    assert rows[1].flops_ratio < 0.5 and rows[2].flops_ratio == 1.0
    assert rows[2].same_as_dense  # keep-all is identity


def test_cli_bad_arguments_exit_nonzero():
    r = subprocess.run([sys.executable, "-m", "tokenprune.cli", "demo", "--repeats", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--repeats" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tokenprune.cli", "nope"], capture_output=True, text=True)
    assert r.returncode != 0


def test_lmms_backend_without_lmms_eval_explains(tmp_path, capsys):
    import importlib.util

    import pytest

    if importlib.util.find_spec("lmms_eval") is not None:
        pytest.skip("lmms-eval is installed here")
    assert main(["eval", "--backend", "lmms-eval", "--limit", "2", "--out", str(tmp_path / "r.json")]) == 2
    assert "setup_lmms.sh" in capsys.readouterr().out
