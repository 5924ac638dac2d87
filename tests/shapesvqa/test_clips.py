"""ShapesVQA clips and the Qwen-architecture ShapesVQA model's inputs: determinism, labels that match the drawing,
answers re-derived from the rendered pixels/labels (not from the generator's metadata), mp4 round trip, the
torchvision-free processor."""
import numpy as np
import pytest
import torch

from tokenprune.errors import InputError
from tokenprune.shapesvqa.clip_data import CLIP_SPLITS, clip_example, clip_examples, write_clips
from tokenprune.shapesvqa.clip_questions import KINDS, NUMBERS, TEMPLATES, clip_vocabulary
from tokenprune.shapesvqa.clips import CLIP_SIZE, FRAMES, make_clip, render_clip
from tokenprune.shapesvqa.scene import CELLS, COLOURS, GRID, SHAPES, make_scene, patch_labels, render


def test_same_seed_same_clip_and_question():
    a, b = clip_example("clips-test", 5), clip_example("clips-test", 5)
    assert a.clip == b.clip and a.qa == b.qa
    assert np.array_equal(a.frames(), b.frames())
    assert not np.array_equal(a.frames(), clip_example("clips-test", 6).frames())
    assert len(set(CLIP_SPLITS.values())) == 3
    with pytest.raises(InputError, match="split"):
        clip_example("clips-dev", 0)


def test_kinds_rotate_and_words_in_vocabulary():
    exs = clip_examples("clips-val", 240)
    assert [e.qa.kind for e in exs[:3]] == list(KINDS)
    vocab = set(clip_vocabulary())
    for e in exs:
        assert set(e.qa.question.split()) <= vocab and e.qa.answer in vocab
    assert {e.qa.type for e in exs} == set(TEMPLATES)


def _regions(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(v): labels == v for v in np.unique(labels) if v}


def _palette(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda c: float(np.abs(np.asarray(COLOURS[c]) - rgb).sum()))


def test_labels_match_the_drawing():
    for seed in range(30):
        clip = make_clip(seed)
        frames, labels = render_clip(clip)
        assert frames.shape == (FRAMES, CLIP_SIZE, CLIP_SIZE, 3) and labels.shape == frames.shape[:3]
        for t in range(FRAMES):
            visible = dict(clip.visible(t))
            assert set(_regions(labels[t])) <= {i + 1 for i in visible}
            for i, o in visible.items():
                region = labels[t] == i + 1
                if region.sum() < 30:  # an occluded sliver of a mover
                    continue
                assert _palette(frames[t][region].mean(0)) == o.colour  # drawn in the labelled colour
                ys, xs = np.nonzero(region)
                assert abs(xs.mean() - o.cx) < o.size / 3 and abs(ys.mean() - o.cy) < o.size / 3


def test_answers_follow_the_clip():
    """Each answer is re-derived from the rendered label maps and pixels."""
    checked = set()
    for i in range(300):
        e = clip_example("clips-train", i)
        frames, labels = render_clip(e.clip)
        present = [set(_regions(labels[t])) for t in range(FRAMES)]
        colour_of = lambda t, k: _palette(frames[t][labels[t] == k].mean(0))  # noqa: E731
        qa, q = e.qa, e.qa.type
        if q == "count_end":
            assert qa.answer == NUMBERS[len(present[-1])]
        elif q == "count_start":
            assert qa.answer == NUMBERS[len(present[0])]
        elif q == "count_colour_end":
            colour = qa.question.split()[2]
            assert qa.answer == NUMBERS[sum(colour_of(-1, k) == colour for k in present[-1])]
        elif q == "frames_colour":
            colour = next(w for w in qa.question.split() if w in COLOURS)
            n = sum(any(colour_of(t, k) == colour for k in present[t]) for t in range(FRAMES))
            assert qa.answer == NUMBERS[n]
        elif q in ("appears", "appears_colour"):
            (k,) = present[-1] - present[0]
            assert qa.answer == (e.clip.tracks[k - 1].obj.shape if q == "appears" else colour_of(-1, k))
        elif q == "vanishes":
            (k,) = present[0] - present[-1]
            assert qa.answer == e.clip.tracks[k - 1].obj.shape
        elif q in ("moves", "moves_colour"):
            def centre(t, k):
                ys, xs = np.nonzero(labels[t] == k)
                return np.array([xs.mean(), ys.mean()])
            common = present[0] & present[-1]
            moved = [k for k in common if np.abs(centre(0, k) - centre(-1, k)).max() > CLIP_SIZE / GRID / 2]
            assert len(moved) == 1
            assert qa.answer == (e.clip.tracks[moved[0] - 1].obj.shape if q == "moves" else colour_of(0, moved[0]))
        elif q == "recolour":
            changed = [k for k in present[0] & present[-1] if colour_of(0, k) != colour_of(-1, k)]
            assert len(changed) == 1 and qa.answer == colour_of(-1, changed[0])
        elif q.startswith(("start_", "end_")):
            t = 0 if q.startswith("start") else -1
            cell = CELLS.index(next(c for c in CELLS if f"the {c} at" in qa.question))
            r, c = divmod(cell, GRID)
            side = CLIP_SIZE // GRID
            sub = labels[t][r * side:(r + 1) * side, c * side:(c + 1) * side]
            k = int(np.bincount(sub[sub > 0]).argmax())
            want = colour_of(t, k) if q.endswith("colour") else e.clip.tracks[k - 1].obj.shape
            assert qa.answer == want
        checked.add(q)
    assert checked == set(TEMPLATES)


def test_clips_written_as_mp4_read_back_with_decord(tmp_path):
    pytest.importorskip("av")
    pytest.importorskip("decord")
    import json

    from tokenprune.video import load_video

    path = write_clips("clips-test", 2, tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1] and rows[0]["question"] == clip_example("clips-test", 0).qa.question
    clip = load_video(tmp_path / rows[0]["video"], backend="decord")
    assert clip.frames.shape == (FRAMES, CLIP_SIZE, CLIP_SIZE, 3)
    assert clip.timestamps == [t / 2 for t in range(FRAMES)]
    assert np.abs(clip.frames.astype(int) - clip_example("clips-test", 0).frames()).mean() < 2.0


def test_scenes_on_non_square_canvases_keep_objects_in_their_cells():
    for w, h in ((392, 252), (280, 448)):
        for seed in range(20):
            s, base = make_scene(seed, w, h), make_scene(seed)
            assert [(o.cell, o.colour, o.shape) for o in s.objects] == [(o.cell, o.colour, o.shape) for o in base.objects]
            img, lmap = render(s)
            assert img.size == (w, h) and lmap.shape == (h, w)
            pl = patch_labels(s, lmap, 28)
            assert pl["cell"].shape == (h // 28 * (w // 28),) and set(pl["cell"]) == set(range(9))
            for i, o in enumerate(s.objects):
                cells = pl["cell"][pl["object"] == i + 1]
                assert len(cells) == 0 or np.bincount(cells).argmax() == o.cell
    assert set(SHAPES) <= set(clip_vocabulary())


def test_video_pixels_match_the_image_layout_for_a_still_clip():
    """Two identical frames patchify exactly as the image processor lays out one image (it repeats the frame)."""
    from tokenprune.shapesvqa import qwen as Q
    from tokenprune.shapesvqa.qwen_processor import video_pixels

    proc = Q.make_processor()
    img = np.asarray(render(make_scene(3, 392, 252))[0])
    ip = proc.image_processor
    ref = ip(images=[img], return_tensors="pt")
    px, grid = video_pixels(np.stack([img, img]), ip.image_mean, ip.image_std)
    assert grid == ref["image_grid_thw"][0].tolist() == [1, 18, 28]
    torch.testing.assert_close(torch.from_numpy(px), ref["pixel_values"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="multiples of 28"):
        video_pixels(np.zeros((2, 30, 28, 3), np.uint8), ip.image_mean, ip.image_std)


def test_qwen_processor_expands_placeholders_and_marks_modalities():
    from tokenprune.shapesvqa import qwen as Q

    proc = Q.make_processor()
    e = clip_example("clips-test", 0)
    x = Q.inputs(proc, [e.qa.question, "how many shapes are there at the end ?"], videos=[e.frames()] * 2)
    video_id = proc.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert x["video_grid_thw"].tolist() == [[4, 18, 18]] * 2
    assert ((x["input_ids"] == video_id).sum(1) == 4 * 81).all()
    assert torch.equal(x["mm_token_type_ids"] == 2, x["input_ids"] == video_id)
    lengths = x["attention_mask"].sum(1).tolist()
    assert lengths[0] != lengths[1] and x["attention_mask"][:, -1].all()  # left padding
    with pytest.raises(ValueError, match="placeholder"):
        proc(text=["no media here"], images=[np.zeros((56, 56, 3), np.uint8)])


@pytest.mark.parametrize("kind", ["images", "clips"])
def test_qwen_training_rows_answers_and_evidence(kind):
    """The training batches: answers sit right after 'ASSISTANT :', every evidence distribution lies on its own
    row's visual tokens and sums to 1, and the losses (answer, auxiliary, grounding) are finite."""
    import random

    from evals.shapesvqa.train_qwen import Batcher, losses
    from tokenprune.shapesvqa import qwen as Q

    proc = Q.make_processor()
    batcher = Batcher(proc, turns=3)
    b = getattr(batcher, kind)([11, 12], random.Random(0))
    vocab = proc.tokenizer.get_vocab()
    ids = b["input_ids"]
    for (r, p), t in zip(b["pos"].tolist(), b["tgt"].tolist()):
        assert ids[r, p].item() == vocab[":"] and ids[r, p - 1].item() == vocab["ASSISTANT"] and ids[r, p + 1] == t
    visual = b["mm_token_type_ids"] > 0
    focus = b["focus"]
    torch.testing.assert_close(focus.sum(1), torch.ones(len(focus)))
    assert not (focus[~visual[b["pos"][:, 0]]] > 0).any()
    model = Q.make_model(layers=4)
    head = torch.nn.Linear(192, 23)
    total, logs = losses(model, head, b, aux_weight=0.5, ground=1.0)
    assert torch.isfinite(total) and {"qa", "ground", "aux_shape"} <= set(logs)
    # clip 55 has a question whose evidence misses every token centre: uniform, not 0/0 (a NaN loss once)
    focus = batcher.clips([55], random.Random(0))["focus"]
    assert torch.isfinite(focus).all()
