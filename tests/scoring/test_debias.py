"""Attention debiasing: trend recovery, padding and sink exclusion, calibrated mode."""
import json

import pytest
import torch

import tokenprune as tp
from tokenprune import ConfigError, PruneConfig, Stage
from tokenprune.calibrate import fit_position_trend, save_calibration
from tokenprune.registry import SCORERS
from tokenprune.scoring.view import TokenView

from ..conftest import GEN, batch, tiny


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def view_for(raw: torch.Tensor, feats: torch.Tensor | None = None) -> TokenView:
    v = raw.shape[0]
    feats = feats if feats is not None else torch.randn(v, 8, generator=torch.Generator().manual_seed(5))
    view = TokenView(hidden=feats[None], visual_index=torch.arange(v)[None],
                     visual_mask=torch.ones(1, v, dtype=torch.bool), item_id=torch.zeros(1, v, dtype=torch.long),
                     local_index=torch.arange(v)[None], item_len=torch.full((1, v), v),
                     budget=torch.full((1, v), 16), valid=torch.ones(1, v, dtype=torch.bool), layer=2,
                     generator=torch.Generator())
    view._attention_fn = lambda query, keys="all": raw[None]
    return view


def test_online_debiasing_recovers_content_under_exponential_trend():
    g = torch.Generator().manual_seed(0)
    v = 576
    content = torch.exp(0.5 * torch.randn(v, generator=g))
    t = torch.arange(v) / (v - 1)
    raw = content * torch.exp(6.0 * t)
    assert spearman(raw, content) < 0.5
    score = SCORERS.get("debiased_attention")(view_for(raw), sinks=False)[0]
    assert spearman(score, content) >= 0.99


def test_sinks_are_excluded():
    g = torch.Generator().manual_seed(1)
    v = 64
    raw = torch.rand(v, generator=g) * 0.01 + 0.01
    feats = torch.randn(v, 8, generator=g)
    raw[10], feats[10] = 0.5, feats[10] * 50  # outlier attention and outlier norm: a sink
    raw[20] = 0.4  # outlier attention alone: a genuinely attended token, kept
    score = SCORERS.get("debiased_attention")(view_for(raw, feats))[0]
    assert score[10] == float("-inf") and torch.isfinite(score[20]) and int(score.argmax()) == 20


def test_padded_canvas_is_never_kept():
    model = tiny("llava")
    inputs = batch("llava", model)
    pv = inputs["pixel_values"].clone()
    pv[:, :, :28, :] = 0.0  # top half of every image is padding (expand-to-square canvas)
    inputs["pixel_values"] = pv
    with tp.pruned(model, "debiased-fastv", keep=12) as h:
        model(**inputs)
        kept = h.stats.stages[0].kept_indices
        out = model.generate(**inputs, max_new_tokens=4, **GEN)  # features precomputed by generate()
        kept_gen = h.stats.stages[0].kept_indices
    assert kept_gen == kept
    # 16 patches per image in a 4x4 grid: the first 8 are padding; the budget is capped to the 8 that remain
    for row in kept:
        for img in row:
            assert img and min(img) >= 8 and len(img) == 8
    assert out.shape[0] == 3


def test_calibrated_mode(tmp_path):
    with pytest.raises(ConfigError, match="Stage.calibration"):
        Stage(2, scorer="debiased_attention", mode="calibrated")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="cannot read a position-trend file"):
        Stage(2, scorer="debiased_attention", mode="calibrated", calibration=str(bad))
    with pytest.raises(ConfigError, match="Stage.base: got .*; allowed: one of"):
        Stage(2, scorer="debiased_attention", base="norm")
    model = tiny("llava")
    trend = fit_position_trend(model, [batch("llava", model, seed=s) for s in range(3)], layer=2)
    assert trend["images"] == 9 and trend["model_type"] == "llava"
    path = tmp_path / "trend.json"
    save_calibration(trend, str(path))
    assert json.loads(path.read_text())["slope"] == trend["slope"]
    cfg = PruneConfig([Stage(2, keep=4, scorer="debiased_attention", mode="calibrated", calibration=str(path))])
    inputs = batch("llava", model)
    with tp.pruned(model, cfg) as h:
        cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, **GEN)
        recomputed = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False, **GEN)
        assert h.stats.stages[0].kept == [4, 8, 0]
    assert torch.equal(cached, recomputed)


def test_calibrate_cli_on_a_saved_model(tmp_path):
    from PIL import Image

    from tokenprune.cli import main
    from tokenprune.testing.tiny import make_llava_processor, make_model

    model_dir, img_dir = tmp_path / "model", tmp_path / "imgs"
    make_model("llava").save_pretrained(model_dir)
    make_llava_processor().save_pretrained(model_dir)
    img_dir.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 48), (40 * i, 100, 200)).save(img_dir / f"{i}.png")
    out = tmp_path / "trend.json"
    assert main(["calibrate", str(model_dir), "--layer", "2", "--images", str(img_dir), "--out", str(out)]) == 0
    trend = json.loads(out.read_text())
    assert trend["images"] == 3 and trend["layer"] == 2
    assert main(["calibrate", str(model_dir), "--images", "synthetic", "--samples", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["images"] == 2
    Stage(2, scorer="debiased_attention", mode="calibrated", calibration=str(out))
    assert main(["calibrate", str(tmp_path / "missing"), "--out", str(tmp_path / "x.json")]) == 2
    assert main(["calibrate", str(model_dir), "--images", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
