"""ShapesVQA: deterministic generator, labels, tokenizer/processor round trip, the training rows, the embedded model."""
import numpy as np
import pytest
import torch

from tokenprune.shapesvqa import model as M
from tokenprune.shapesvqa.data import SPLITS, example, examples, write_split
from tokenprune.shapesvqa.questions import KINDS, TEMPLATES, vocabulary
from tokenprune.shapesvqa.scene import make_scene, patch_labels, render


def test_same_seed_same_images_questions_answers():
    a, b = example("test", 7), example("test", 7)
    assert a.qa == b.qa and a.scene == b.scene
    assert np.array_equal(np.asarray(a.image()), np.asarray(b.image()))
    c = example("test", 8)
    assert not np.array_equal(np.asarray(a.image()), np.asarray(c.image()))
    assert example("train", 7).scene.seed != a.scene.seed != example("val", 7).scene.seed
    assert len(set(SPLITS.values())) == 3


def test_kinds_balanced_and_words_in_vocabulary():
    exs = examples("val", 200)
    vocab = set(vocabulary())
    assert [e.qa.kind for e in exs[:4]] == ["localized", "global", "localized", "global"]
    assert sum(e.qa.kind == "localized" for e in exs) == 100
    for e in exs:
        assert set(e.qa.question.split()) <= vocab and e.qa.answer in vocab
    types = {e.qa.type for e in exs}
    assert types == set(TEMPLATES)  # every template family occurs in 200 examples
    assert set(KINDS) == {k for k, _ in TEMPLATES.values()}


def test_answers_follow_the_scene():
    for i in range(60):
        e = example("train", i)
        objs = e.scene.objects
        if e.qa.type == "count_all":
            assert e.qa.answer == ["zero", "one", "two", "three", "four", "five", "six", "seven"][len(objs)]
        if e.qa.type in ("cell_colour", "cell_shape"):
            o = e.scene.at(e.qa.cell)
            assert e.qa.answer == (o.colour if e.qa.type == "cell_colour" else o.shape)


def test_patch_labels_match_the_drawing():
    scene = make_scene(3)
    img, lmap = render(scene)
    assert img.size == (336, 336) and lmap.shape == (336, 336)
    pl = patch_labels(scene, lmap)
    assert all(v.shape == (576,) for v in pl.values())
    assert pl["centre"].sum() == len(scene.objects)
    assert set(np.unique(pl["object"])) <= set(range(len(scene.objects) + 1))
    assert ((pl["colour"] > 0) == (pl["object"] > 0)).all()
    # every object covers patches of its own cell
    for i, o in enumerate(scene.objects):
        assert (pl["cell"][pl["object"] == i + 1] == o.cell).all()


def test_processor_round_trip_and_training_rows_match():
    from evals.shapesvqa.train import Batcher

    proc = M.make_processor()
    e = example("test", 0)
    batcher = Batcher(proc, turns=1)
    text = M.prompt(proc, batcher.questions(e.scene, e.scene.seed)[0].question)
    enc = proc(images=[e.image()], text=[text], return_tensors="pt")
    ids = enc["input_ids"][0]
    assert int((ids == M.IMAGE).sum()) == 576 and enc["pixel_values"].shape == (1, 3, 336, 336)
    words = [w for w in proc.tokenizer.convert_ids_to_tokens(ids.tolist()) if w != "<image>"]
    assert words == [w for w in text.split() if w != "<image>"]
    row = batcher([e.scene.seed])
    # the training row starts exactly like the processor's prompt (then the answer follows)
    assert row["input_ids"][0, :len(ids)].tolist() == ids.tolist()
    assert torch.allclose(row["pixel_values"][0], enc["pixel_values"][0])


def test_training_type_weights_shift_the_mix_only_when_asked():
    from collections import Counter

    from evals.shapesvqa.train import parse_type_weights
    from tokenprune.shapesvqa.questions import make_qas

    scenes = [make_scene(s) for s in range(40)]
    plain = [make_qas(sc, 8, s) for s, sc in enumerate(scenes)]
    weights = parse_type_weights("count_shape=4,more=4")
    assert weights == {"count_shape": 4.0, "more": 4.0}
    mixed = [q for s, sc in enumerate(scenes) for q in make_qas(sc, 8, s, weights)]
    base = Counter(q.type for qs in plain for q in qs)
    heavy = Counter(q.type for q in mixed)
    # 2 of the (up to) 5 global types at weight 4: their share of global turns goes from ~2/5 to ~8/11
    assert heavy["count_shape"] + heavy["more"] > 1.5 * (base["count_shape"] + base["more"])
    assert [q.kind for q in mixed[:4]] == ["localized", "global", "localized", "global"]  # kinds still alternate
    for bad in ("count_shapes=2", "more=0", "more=x"):
        with pytest.raises(SystemExit):
            parse_type_weights(bad)


def test_write_split(tmp_path):
    path = write_split("val", 3, tmp_path)
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and (tmp_path / "images").is_dir()
    import json

    rec = json.loads(lines[0])
    assert (tmp_path / rec["image"]).is_file() and rec["answer"]


def test_missing_model_dir_is_a_clear_error(tmp_path):
    from tokenprune.errors import InputError

    with pytest.raises(InputError, match="not a saved model folder"):
        M.load(tmp_path / "nothing")
