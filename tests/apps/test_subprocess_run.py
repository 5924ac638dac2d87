"""evals.subprocess_run: the RESULT-line protocol of the per-process benchmarks."""
from __future__ import annotations

import json

import pytest

from evals.subprocess_run import run_worker

WORKER = """
import json, os, sys
from evals.subprocess_run import emit
if sys.argv[1] == "fail":
    print("RESULT not json yet", flush=True)
    sys.exit(3)
print("engine log line")
emit({"args": sys.argv[1:], "config": os.environ.get("TOKENPRUNE_VLLM_CONFIG"), "hub": os.environ["HF_HUB_OFFLINE"]})
"""


@pytest.fixture()
def worker_env(tmp_path, monkeypatch):
    (tmp_path / "fake_worker.py").write_text(WORKER)
    import evals

    root = str(__import__("pathlib").Path(evals.__file__).parent.parent)
    monkeypatch.setenv("TOKENPRUNE_VLLM_CONFIG", "inherited")  # never leaks into a run without a config
    return {"PYTHONPATH": f"{tmp_path}:{root}"}


def test_result_line_parsed_and_config_passed(worker_env):
    out = run_worker("fake_worker", ["a", "b"], worker_env, json.dumps({"preset": "divprune"}), "ok")
    assert out == {"args": ["a", "b"], "config": '{"preset": "divprune"}', "hub": "1"}
    assert run_worker("fake_worker", ["x"], worker_env, None, "no config")["config"] is None


def test_failed_worker_exits_with_its_output(worker_env):
    with pytest.raises(SystemExit, match=r"vLLM run failed \(bad run\)"):
        run_worker("fake_worker", ["fail"], worker_env, None, "bad run")
