"""lmms-eval's own vLLM model with the tokenprune vLLM plugin active (``TOKENPRUNE_VLLM_CONFIG`` in the engine's
environment) answers ShapesVQA like the tokenprune lmms-eval model on the HF path under the same pre-LLM config."""
import glob
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("vllm")
pytest.importorskip("lmms_eval")

pytestmark = pytest.mark.vllm
LIMIT = 32
CONFIG = {"stages": [{"at": "pre_llm", "scorer": "norm", "selector": "maxmin", "keep": 64}]}  # = divprune, keep 64


def samples(out_dir) -> dict[int, str]:
    path = sorted(glob.glob(f"{out_dir}/*/*_samples_shapesvqa.jsonl"))[-1]
    rows = [json.loads(line) for line in open(path)]
    return {r["doc_id"]: r["filtered_resps"][0] if isinstance(r["filtered_resps"], list) else r["filtered_resps"]
            for r in rows}


def test_lmms_eval_vllm_model_prunes_like_the_hf_path(tmp_path):
    from tokenprune.integrations.lmms_eval.tasks import write_tasks
    from tokenprune.integrations.vllm.checkpoint import llava_for_vllm
    from tokenprune.shapesvqa.model import EMBEDDED_DIR

    tasks = write_tasks(tmp_path / "tasks", "test", LIMIT)
    llava_for_vllm(EMBEDDED_DIR, tmp_path / "model")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
           "OMP_NUM_THREADS": "1", "TOKENPRUNE_VLLM_CONFIG": json.dumps(CONFIG)}

    def lmms(model: str, args: str, out: str, extra_env: dict | None = None) -> dict[int, str]:
        p = subprocess.run([sys.executable, "-m", "lmms_eval", "--model", model, "--model_args", args, "--tasks",
                            "shapesvqa", "--include_path", str(tasks), "--batch_size", "8", "--output_path",
                            str(tmp_path / out), "--log_samples"], env={**env, **(extra_env or {})},
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-4000:]
        return samples(tmp_path / out)

    served = lmms("vllm", f"model={tmp_path / 'model'},dtype=float32,enforce_eager=True,max_model_len=1024,"
                          "image_first=True,max_new_tokens=1", "vllm")
    hf = lmms("tokenprune", "pretrained=embedded,preset=divprune,keep=64", "hf")
    dense = lmms("tokenprune", "pretrained=embedded", "dense")
    assert sorted(served) == list(range(LIMIT))
    # vLLM's float32 kernels match the HF path's log-probabilities to ~1e-4 (tests/vllm): a greedy one-word answer
    # can only differ on a near-tie, so at most one question of 32 may disagree
    agree = sum(served[i] == hf[i] for i in range(LIMIT))
    assert agree >= LIMIT - 1, {i: (served[i], hf[i]) for i in range(LIMIT) if served[i] != hf[i]}
    assert any(served[i] != dense[i] for i in range(LIMIT))  # the engine pruned: its answers are not the dense ones
