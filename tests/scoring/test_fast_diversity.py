"""Max-min / MMR without the V x V matrix: identical picks to the exact selectors on exact features, the batched form
with padding, and the covering-radius guarantee of the sketched version (checked on clustered, video-like tokens)."""
import pytest
import torch

from tokenprune.fast_diversity import greedy, maxmin_fast, mmr_fast, sketch
from tokenprune.registry import SELECTORS
from tokenprune.selection import maxmin, mmr


def _case(seed: int):
    g = torch.Generator().manual_seed(seed)
    v = int(torch.randint(2, 400, (1,), generator=g))
    d = [8, 48, 200][seed % 3]
    return torch.randn(v, d, generator=g), torch.rand(v, generator=g), max(1, v // (2 + seed % 5))


@pytest.mark.parametrize("seed", range(24))
def test_exact_features_give_the_exact_selectors_picks(seed):
    f, s, k = _case(seed)
    assert torch.equal(maxmin_fast(s, f, k, dims=0), maxmin(s, f, k))
    for lam in (0.0, 0.3, 0.8, 1.0):
        assert torch.equal(mmr_fast(s, f, k, lam=lam, dims=0), mmr(s, f, k, lam=lam))


def test_duplicates_and_ties_follow_the_exact_tie_rule():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    s = torch.ones(5)
    for k in range(1, 6):
        assert torch.equal(maxmin_fast(s, f, k, dims=0), maxmin(s, f, k))
        assert torch.equal(mmr_fast(s, f, k, dims=0), mmr(s, f, k))


def test_batched_form_skips_padding_and_matches_per_item():
    run = SELECTORS.get("maxmin_fast").batched
    g = torch.Generator().manual_seed(0)
    feats, scores = torch.randn(2, 50, 16, generator=g), torch.rand(2, 50, generator=g)
    valid = torch.ones(2, 50, dtype=torch.bool)
    valid[1, 30:] = False
    out = run(scores, feats, valid, [10, 7], dims=0)
    assert torch.equal(out[0], maxmin(scores[0], feats[0], 10))
    assert torch.equal(out[1], maxmin(scores[1, :30], feats[1, :30], 7))
    out = SELECTORS.get("mmr_fast").batched(scores, feats, valid, [10, 7], lam=0.4, dims=0)
    assert torch.equal(out[1], mmr(scores[1, :30], feats[1, :30], 7, lam=0.4))


def _video_tokens(frames=12, per_frame=120, d=512, seed=0, contents=40):
    """Frames of a scene with ``contents`` distinct things: every token is one of them plus noise (near-duplicates
    within and across frames, as in video)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(contents, d, generator=g)
    ids = torch.randint(0, contents, (frames, per_frame), generator=g)
    x = protos[ids] + 0.2 * torch.randn(frames, per_frame, d, generator=g)
    return x.reshape(-1, d), ids.reshape(-1)


def _radius(f_unit: torch.Tensor, picks: torch.Tensor) -> float:
    return float((1.0 - f_unit @ f_unit[picks].T).amin(1).max())


@pytest.mark.parametrize("seed", range(3))
def test_sketched_maxmin_covers_every_distinct_content_like_the_exact_one(seed):
    f, ids = _video_tokens(seed=seed)
    for k in (20, 40):
        exact = maxmin(torch.zeros(len(f)), f, k)
        assert len(set(ids[exact].tolist())) == k  # one token of each content until all are covered
        for dims in (32, 64, 128):
            assert len(set(ids[greedy(sketch(f, dims), k)].tolist())) == k
        rnd = torch.randperm(len(f), generator=torch.Generator().manual_seed(seed))[:k]
        assert len(set(ids[rnd].tolist())) < k  # what a diversity-blind choice does


def test_sketched_maxmin_keeps_the_k_center_guarantee():
    """Greedy farthest-point on distances within ±delta of the true ones covers every token within
    2·OPT + 2·delta <= 2·r_exact + 2·delta (r_exact: the exact greedy's radius, >= OPT)."""
    f, _ = _video_tokens()
    unit = torch.nn.functional.normalize(f, dim=-1)
    k = f.shape[0] // 4
    r_exact = _radius(unit, maxmin(torch.zeros(len(f)), f, k))
    for dims in (32, 64, 128):
        sk = sketch(f, dims)
        delta = float(((unit @ unit.T) - (sk @ sk.T)).abs().max())
        assert _radius(unit, greedy(sk, k)) <= 2 * r_exact + 2 * delta


def test_sketch_is_seeded_and_leaves_small_dims_alone():
    f = torch.randn(30, 100)
    assert torch.equal(sketch(f, 16), sketch(f, 16)) and sketch(f, 16).shape == (30, 16)
    assert torch.allclose(sketch(f, 0), torch.nn.functional.normalize(f, dim=-1))
    assert sketch(f, 500).shape == (30, 100)
