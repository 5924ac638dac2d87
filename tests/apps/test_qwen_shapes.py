"""The eval harness and the demo on the Qwen2-VL ShapesVQA architecture (random weights, saved like a checkpoint):
clip splits, non-square images, fractional budgets, the per-kind columns, kept-token pictures."""
import csv

import pytest

from tokenprune.apps.quality import Sweep, run_sweep, save
from tokenprune.errors import InputError
from tokenprune.shapesvqa import embedded
from tokenprune.shapesvqa import qwen as Q


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen_shapes")
    Q.make_model(layers=3).save_pretrained(path)
    Q.make_processor().save_pretrained(path)
    return path


def test_family_and_load(qwen_dir, tmp_path):
    assert embedded.family(qwen_dir) == "qwen" and embedded.family("embedded") == "llava"
    model, proc = embedded.load(qwen_dir)
    assert model.config.model_type == "qwen2_vl" and embedded.is_qwen(proc)
    with pytest.raises(InputError, match="no config.json"):
        embedded.family(tmp_path)


def test_sweep_on_clips_with_fraction_and_count_budgets(qwen_dir, tmp_path):
    sw = Sweep(model=str(qwen_dir), presets=["divprune", "video-evs"], keeps=[0.5, 40], split="clips-val", limit=4,
               batch=2)
    res = run_sweep(sw)
    assert res["visual_tokens"] == 324
    assert set(res["dense"]) >= {"accuracy", "temporal", "localized", "global"}
    assert [(r["preset"], r["keep"]) for r in res["rows"]] == [("divprune", 0.5), ("divprune", 40),
                                                             ("video-evs", 0.5), ("video-evs", 40)]
    assert all(0 < r["flops_ratio"] < 1 for r in res["rows"])
    paths = save(res, str(tmp_path / "r.json"))
    header = next(csv.reader(open(tmp_path / "r.csv")))
    assert header[2:6] == ["accuracy", "temporal", "localized", "global"]
    assert any(p.endswith("_acc_vs_tokens.png") for p in paths) or len(paths) == 2


def test_sweep_on_non_square_images(qwen_dir):
    res = run_sweep(Sweep(model=str(qwen_dir), presets=["fastv"], keeps=[32], split="test", limit=5, batch=5))
    assert 126 <= res["visual_tokens"] <= 160 and "temporal" not in res["dense"]
    with pytest.raises(InputError, match="visual tokens per item"):
        run_sweep(Sweep(model=str(qwen_dir), presets=["fastv"], keeps=[400], split="test", limit=2, batch=2))


def test_clip_split_refused_for_the_llava_model():
    if not (embedded.NAMES["embedded"] / "config.json").is_file():
        pytest.skip("the embedded checkpoint is not in this checkout")
    with pytest.raises(InputError, match="takes no video"):
        run_sweep(Sweep(presets=["fastv"], keeps=[64], split="clips-val", limit=2, batch=2))


def test_bad_budgets_refused():
    for keeps in ([0], [1.5], [-0.2], []):
        with pytest.raises(InputError, match="--keep"):
            Sweep(keeps=keeps).validate()
    with pytest.raises(InputError, match="clips-test"):
        Sweep(split="clips-dev").validate()


def test_demo_draws_a_strip_for_a_clip(qwen_dir, tmp_path, monkeypatch):
    from PIL import Image

    from tokenprune.apps.demo import run_embedded_demo

    monkeypatch.setitem(embedded.NAMES, "embedded-qwen", qwen_dir)
    rows = run_embedded_demo(repeats=1, out_dir=str(tmp_path), samples=2, model_name="embedded-qwen", video=True,
                             methods=[("divprune", dict(keep=0.25))])
    assert [r.visual_tokens for r in rows] == [324, 81]
    img = Image.open(rows[1].image)
    assert img.size == (4 * 252 + 3 * 4, 252)  # one tile per temporal step
    gif = Image.open(rows[1].image[:-4] + ".gif")  # every frame, its temporal step's kept tokens shown
    assert gif.n_frames == 8 and gif.size == (252, 252)
    rows = run_embedded_demo(repeats=1, out_dir=str(tmp_path), samples=2, model_name="embedded-qwen",
                             methods=[("divprune", dict(keep=0.25))])
    assert rows[0].visual_tokens == 144 and Image.open(rows[1].image).size == (336, 336)
