"""The lmms-eval plugin's multi-round generation and video tasks (``.venv-lmms``; ``-m lmms``)."""
import json
import os

import pytest

pytest.importorskip("lmms_eval")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from tokenprune import InputError  # noqa: E402

pytestmark = pytest.mark.lmms
LIMIT, CLIPS = 8, 6


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    from tokenprune.integrations.lmms_eval.tasks import write_tasks

    return write_tasks(tmp_path_factory.mktemp("shapesvqa"), "test", LIMIT, clips=CLIPS)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """The shipped Qwen ShapesVQA model, else one whose language model is the LLaVA model's (answers that depend
    on the question, so equal answers mean something)."""
    from tokenprune.shapesvqa.qwen import EMBEDDED_QWEN_DIR

    if (EMBEDDED_QWEN_DIR / "config.json").is_file():
        return EMBEDDED_QWEN_DIR
    from evals.shapesvqa.transplant import transplant

    out = tmp_path_factory.mktemp("qwen")
    transplant(out)
    return out


def run(task_dir, model_args: str, task: str, batch_size: int = 3) -> dict:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    return simple_evaluate(model="tokenprune", model_args=model_args, tasks=[task], batch_size=batch_size,
                           task_manager=TaskManager(include_path=str(task_dir)), log_samples=True)


def responses(result: dict, task: str) -> list:
    samples = sorted(result["samples"][task], key=lambda s: s["doc_id"])
    return [s["resps"][0] for s in samples]


@pytest.mark.parametrize("args", ["", "preset=fastv,keep=64,layer=2"])
def test_multi_round_answers_each_round_like_a_single_question(task_dir, args):
    """Three questions per image over three rounds (batch 3 over 8 images: a partial batch) give, round by round,
    the in-process model's answers to each (image, question) pair, pruned the same way."""
    from tokenprune.api import pruned
    from tokenprune.apps.quality import preset_config
    from tokenprune.shapesvqa import model as M
    from tokenprune.integrations.lmms_eval.shapes_task import doc_to_visual

    res = run(task_dir, ",".join(x for x in ["pretrained=embedded", args] if x), "shapesvqa_mr")
    got = responses(res, "shapesvqa_mr")
    docs = [json.loads(line) for line in (task_dir / "test_mr.jsonl").read_text().splitlines()]
    model, processor = M.load("embedded")
    images = [doc_to_visual(d)[0] for d in docs]
    expect = []
    cfg = preset_config("fastv", 64, model.config.text_config.num_hidden_layers, 2) if args else None
    with torch.no_grad(), (pruned(model, cfg) if cfg else torch.no_grad()):
        per_round = [M.answer(model, processor, images, [d["questions"][r] for d in docs]) for r in range(3)]
    expect = [[per_round[r][i] for r in range(3)] for i in range(len(docs))]
    assert [list(g[0]) for g in got] == expect  # each sample: [per-round answers]
    truth = [d["answers"] for d in docs]
    acc = sum(sum(a == b for a, b in zip(e, t)) / 3 for e, t in zip(expect, truth)) / len(docs)
    assert res["results"]["shapesvqa_mr"]["exact_match,none"] == pytest.approx(acc)


@pytest.mark.parametrize("args", ["", "preset=video-divprune,keep=0.25"])
def test_video_task_matches_the_in_process_model(task_dir, qwen_dir, args, tmp_path):
    """ShapesVQA clips as mp4 paths: read with decord, answered through lmms-eval (batch 3) exactly as the model
    answers the same decoded frames in process; pruned runs keep a quarter of each clip's tokens."""
    from tokenprune.api import pruned
    from tokenprune.apps.quality import answers
    from tokenprune.config import PruneConfig
    from tokenprune.shapesvqa import embedded, qwen as Q
    from tokenprune.video import load_video

    stats = tmp_path / "stats.jsonl"
    res = run(task_dir, ",".join(x for x in [f"pretrained={qwen_dir}", args, f"stats_path={stats}"] if x),
              "shapesvqa_clips")
    got = [r[0] if isinstance(r, list) else r for r in responses(res, "shapesvqa_clips")]
    docs = [json.loads(line) for line in (task_dir / "clips-test.jsonl").read_text().splitlines()]
    model, processor = embedded.load(qwen_dir)
    inputs = [dict(Q.inputs(processor, [d["question"] for d in docs[i:i + 3]],
                            videos=[load_video(d["video"], max_frames=32).frames for d in docs[i:i + 3]]))
              for i in range(0, len(docs), 3)]
    vocab = processor.tokenizer.convert_ids_to_tokens(list(range(model.config.text_config.vocab_size)))
    cfg = PruneConfig.from_preset("video-divprune", keep=0.25,
                                  num_layers=model.config.text_config.num_hidden_layers) if args else None
    with torch.no_grad(), (pruned(model, cfg) if cfg else torch.no_grad()):
        expect = answers(model, inputs, vocab)[0]
    assert got == expect
    assert len(set(expect)) > 1  # the answers depend on the question: the comparison can fail
    rows = [json.loads(line) for line in stats.read_text().splitlines()]
    assert len(rows) == CLIPS and all(r["videos"] == 1 and r["images"] == 0 for r in rows)
    if args:
        assert all(r["stages"][-1]["visual_in"] == 324 and r["stages"][-1]["kept"] == 81 for r in rows)


def test_video_to_an_image_only_family_is_refused(task_dir):
    with pytest.raises(InputError, match="LlavaForConditionalGeneration takes image input only"):
        run(task_dir, "pretrained=embedded", "shapesvqa_clips")


def test_bad_video_args_fail_before_loading():
    from tokenprune import ConfigError
    from tokenprune.integrations.lmms_eval.model import TokenpruneLMM

    for bad, field in [(dict(video_frames=0), "video_frames"), (dict(video_fps="fast"), "video_fps"),
                       (dict(video_fps=-1), "video_fps"), (dict(video_frames=8, video_fps=2), "video_frames/video_fps"),
                       (dict(max_frames=0), "max_frames")]:
        with pytest.raises(ConfigError, match=field):
            TokenpruneLMM(pretrained="embedded", **bad)


def test_two_processes_give_the_one_process_result(tmp_path):
    """``torchrun --nproc_per_node 2 -m lmms_eval`` (gloo on CPU): lmms-eval shards the questions over the ranks and
    gathers them; every sample and the aggregated accuracy equal the one-process run's. (``accelerate launch --cpu
    --num_processes 2`` started a single process here, accelerate 1.16: on CPU, torchrun is the launcher.)"""
    import subprocess
    import sys
    from pathlib import Path

    from tokenprune.integrations.lmms_eval.tasks import write_tasks

    tasks = write_tasks(tmp_path / "tasks", "test", LIMIT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--model", "tokenprune", "--model_args", f"pretrained=embedded,preset=divprune,keep=64,stats_path=",
            "--tasks", "shapesvqa", "--include_path", str(tasks), "--batch_size", "4", "--log_samples"]
    bindir = Path(sys.executable).parent
    launch = [str(bindir / "torchrun"), "--nproc_per_node", "2", "-m", "lmms_eval"]
    out = {}
    for name, cmd in (("one", [sys.executable, "-m", "lmms_eval"]), ("two", launch)):
        stats = tmp_path / f"{name}.jsonl"
        a = [x.replace("stats_path=", f"stats_path={stats}") for x in args]
        p = subprocess.run(cmd + a + ["--output_path", str(tmp_path / name)], env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-4000:]
        res = json.loads(next((tmp_path / name).glob("*/*_results.json")).read_text())
        rows = [json.loads(line) for line in next((tmp_path / name).glob("*/*_samples_shapesvqa.jsonl")).open()]
        ranks = {json.loads(line)["rank"] for line in stats.read_text().splitlines()}
        out[name] = (res["results"]["shapesvqa"]["exact_match,none"],
                     sorted((r["doc_id"], r["filtered_resps"][0]) for r in rows), ranks)
    assert out["two"][:2] == out["one"][:2] and len(out["one"][1]) == LIMIT
    assert out["one"][2] == {0} and out["two"][2] == {0, 1}  # both ranks answered questions


def test_qwen_image_task_matches_the_in_process_model(task_dir, qwen_dir):
    """The Qwen family on the image task (native resolution, M-RoPE) under divprune: lmms-eval's answers are the
    model's own in process."""
    from PIL import Image

    from tokenprune.api import pruned
    from tokenprune.apps.quality import answers
    from tokenprune.config import PruneConfig
    from tokenprune.shapesvqa import embedded, qwen as Q

    res = run(task_dir, f"pretrained={qwen_dir},preset=divprune,keep=32", "shapesvqa")
    got = [r[0] if isinstance(r, list) else r for r in responses(res, "shapesvqa")]
    docs = [json.loads(line) for line in (task_dir / "test.jsonl").read_text().splitlines()]
    model, processor = embedded.load(qwen_dir)
    inputs = [dict(Q.inputs(processor, [d["question"] for d in docs[i:i + 3]],
                            images=[Image.open(d["image"]).convert("RGB") for d in docs[i:i + 3]]))
              for i in range(0, len(docs), 3)]
    vocab = processor.tokenizer.convert_ids_to_tokens(list(range(model.config.text_config.vocab_size)))
    cfg = PruneConfig.from_preset("divprune", keep=32, num_layers=model.config.text_config.num_hidden_layers)
    with torch.no_grad(), pruned(model, cfg):
        assert got == answers(model, inputs, vocab)[0]
