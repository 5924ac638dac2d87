"""Known-answer tests for diversity selectors and the merge reducer."""
import pytest
import torch

from tokenprune import ConfigError, Stage
from tokenprune.reduce import merge
from tokenprune.selection import maxmin, mmr, topk


def spread_set(k: int = 4, dup: int = 12, d: int = 8, seed: int = 0):
    """``k`` orthogonal directions, plus ``dup`` near-copies of the first one."""
    g = torch.Generator().manual_seed(seed)
    base = torch.eye(d)[:k] * 3.0
    copies = base[0] + 0.01 * torch.randn(dup, d, generator=g)
    feats = torch.cat([copies[: dup // 2], base, copies[dup // 2:]])
    directions = list(range(dup // 2, dup // 2 + k))
    return feats, directions


def test_maxmin_returns_the_most_spread_points():
    feats, directions = spread_set()
    sel = maxmin(torch.zeros(len(feats)), feats, 4)
    picked_dirs = {int(torch.nn.functional.normalize(feats[i], dim=0).argmax()) for i in sel}
    assert picked_dirs == {0, 1, 2, 3}  # one per direction, never two near-copies
    assert set(sel.tolist()) >= set(directions[1:])


def test_maxmin_first_pick_is_the_isolated_point():
    feats = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, 0.2], [0.0, 1.0]])
    # a size-1 selection is just the first pick: the point whose nearest neighbour is farthest
    assert maxmin(torch.zeros(4), feats, 1).tolist() == [3]


def test_mmr_limits():
    g = torch.Generator().manual_seed(1)
    feats, scores = torch.randn(40, 16, generator=g), torch.rand(40, generator=g)
    assert torch.equal(mmr(scores, feats, 10, lam=1.0), topk(scores, feats, 10))
    assert torch.equal(mmr(scores, feats, 10, lam=0.0), maxmin(scores, feats, 10))
    mid = mmr(scores, feats, 10, lam=0.5)
    assert mid.numel() == 10 and mid.unique().numel() == 10 and torch.all(mid[1:] > mid[:-1])


def test_mmr_trades_importance_for_diversity():
    feats, _ = spread_set(k=2, dup=6)
    scores = torch.zeros(len(feats))
    scores[:3] = 1.0  # the near-copies are the most "important"
    top = mmr(scores, feats, 2, lam=1.0)
    div = mmr(scores, feats, 2, lam=0.3)
    cos = lambda i, j: torch.nn.functional.cosine_similarity(feats[i], feats[j], dim=0)  # noqa: E731
    assert cos(*top.tolist()) > 0.99 and cos(*div.tolist()) < 0.1


@pytest.mark.parametrize("lam", [-0.1, 1.5, "x", True])
def test_mmr_lambda_validated(lam):
    with pytest.raises(ConfigError, match=r"Stage.lam: .* allowed: a number in \[0, 1\]"):
        Stage("pre_llm", keep=4, scorer="norm", selector="mmr", lam=lam)


def test_options_route_to_their_owner():
    s = Stage(2, keep=8, scorer="attention", selector="mmr", query="text", lam=0.3)
    assert s.scorer_kwargs == {"query": "text"} and s.selector_kwargs == {"lam": 0.3}
    assert Stage.from_dict(s.to_dict()) == s
    with pytest.raises(ConfigError, match="Stage.lam: not an option"):
        Stage(2, keep=8, lam=0.3)  # topk has no lam


def test_merge_preserves_score_weighted_sum():
    g = torch.Generator().manual_seed(2)
    x, s = torch.randn(20, 6, generator=g), torch.rand(20, generator=g)
    keep = torch.tensor([1, 4, 9, 15])
    pruned = torch.tensor([i for i in range(20) if i not in keep.tolist()])
    merged = merge(x, keep, pruned, s)
    f = torch.nn.functional.normalize(x, dim=-1)
    target = (f[pruned] @ f[keep].T).argmax(1)
    group_w = s[keep].clone().index_add(0, target, s[pruned])
    torch.testing.assert_close((merged * group_w[:, None]).sum(0), (x * s[:, None]).sum(0), atol=1e-5, rtol=1e-5)
    assert torch.equal(merge(x, keep, pruned[:0], s), x[keep])  # nothing pruned: unchanged


def test_adaptive_lambda_follows_complexity():
    from tokenprune.selection import adaptive, effective_rank

    g = torch.Generator().manual_seed(3)
    simple = torch.randn(30, 1, generator=g) @ torch.randn(1, 16, generator=g) + 0.001 * torch.randn(30, 16, generator=g)
    complex_ = torch.randn(30, 16, generator=g)
    assert effective_rank(simple) < 1.5 < 8 < effective_rank(complex_)
    scores = torch.rand(30, generator=g)
    # rank ~1 -> lambda ~ lam_max = 1 -> pure top-k by score
    assert torch.equal(adaptive(scores, simple, 6), topk(scores, simple, 6))
    # lam_min = lam_max = 0 -> pure diversity whatever the rank
    assert torch.equal(adaptive(scores, complex_, 6, lam_min=0.0, lam_max=0.0), maxmin(scores, complex_, 6))
    with pytest.raises(ConfigError, match="lam_min"):
        Stage(2, keep=4, selector="adaptive", lam_min=0.9, lam_max=0.5)


def test_visionzip_dominant_plus_contextual_centres():
    from tokenprune.selection import visionzip

    scores = torch.tensor([0.0, 9.0, 0.1, 0.2, 8.0, 0.3, 0.4, 0.5, 0.6, 0.7])
    sel = visionzip(scores, None, 4, contextual=2)
    # dominant: 1 and 4; centres every (8 // 2)-th of the rest [0, 2, 3, 5, 6, 7, 8, 9] from the first -> 0 and 6
    assert sel.tolist() == [0, 1, 4, 6]
    # 11 left for 3 centres: stride 3 -> 1st, 4th and 7th of the rest (the 10th is cut)
    many = torch.tensor([9.0] + [0.0] * 11)
    assert visionzip(many, None, 4, contextual=3).tolist() == [0, 1, 4, 7]
    assert torch.equal(visionzip(scores, None, 4), topk(scores, None, 4))


def test_contextual_merge_leaves_dominant_tokens_untouched():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(12, 5, generator=g)
    scores = torch.linspace(1, 0, 12)  # token 0 most important
    keep = torch.tensor([0, 1, 6, 11])  # dominant 0, 1; contextual centres 6, 11 (lowest scores among kept)
    pruned = torch.tensor([i for i in range(12) if i not in keep.tolist()])
    out = merge(x, keep, pruned, scores, contextual=2)
    assert torch.equal(out[:2], x[:2])
    # centres are plain means of their groups, and every pruned token lands in exactly one group
    f = torch.nn.functional.normalize(x, dim=-1)
    target = (f[pruned] @ f[keep[2:]].T).argmax(1)
    for j, centre in enumerate((6, 11)):
        members = torch.cat([x[centre:centre + 1], x[pruned[target == j]]])
        torch.testing.assert_close(out[2 + j], members.mean(0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_contextual_merge_matches_its_definition(dtype):
    """Dominant rows bit for bit, each centre the mean of itself and the pruned rows closest to it (cosine), the
    input untouched; a pruned row identical to a dominant one still joins a centre, and two identical centres each
    lead their own group (ties send the pruned rows to the first)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(40, 16, generator=g)
    x[5] = x[30]  # pruned 5 duplicates dominant 30
    x[12] = x[1]  # centre 12 duplicates centre 1
    x = x.to(dtype)
    scores = torch.rand(40, generator=g)
    keep = torch.tensor([1, 3, 12, 20, 30, 33])
    scores[keep[:3]] = -1.0 + torch.arange(3) * 0.1  # centres: the 3 lowest-scored kept rows, 1, 3, 12
    scores[12] = -0.5
    pruned = torch.tensor([i for i in range(40) if i not in keep.tolist()])
    before = x.clone()
    out = merge(x, keep, pruned, scores, contextual=3)
    assert torch.equal(x, before) and out.dtype == dtype
    centres = [1, 3, 12]
    assert torch.equal(out[3:], x[keep[3:]])  # dominant rows untouched
    f = torch.nn.functional.normalize(x.double(), dim=-1)
    join = (f[pruned] @ f[centres].T).argmax(1)
    for j, c in enumerate(centres):
        expect = torch.cat([x[c:c + 1], x[pruned[join == j]]]).double().mean(0)
        torch.testing.assert_close(out[j].double(), expect, atol=1e-2 if dtype == torch.bfloat16 else 1e-6,
                                   rtol=1e-2 if dtype == torch.bfloat16 else 1e-6)


@pytest.mark.parametrize("name", ["topk", "maxmin", "mmr", "adaptive", "visionzip"])
def test_every_selector_returns_k_unique_sorted(name):
    from tokenprune.registry import SELECTORS

    g = torch.Generator().manual_seed(6)
    for v, k in [(30, 1), (30, 7), (30, 30), (5, 3)]:
        sel = SELECTORS.get(name)(torch.rand(v, generator=g), torch.randn(v, 12, generator=g), k)
        assert sel.numel() == k and sel.unique().numel() == k and torch.all(sel[1:] > sel[:-1])
        assert sel.min() >= 0 and sel.max() < v


@pytest.mark.parametrize("lam", [0.0, 0.4, 1.0])
def test_batched_mmr_equals_per_image(lam):
    from tokenprune.selection import mmr_batched

    g = torch.Generator().manual_seed(7)
    lengths, ks = [30, 18, 25], [6, 18, 3]
    s = torch.full((3, 30), float("-inf"))
    f = torch.zeros(3, 30, 8)
    for i, m in enumerate(lengths):
        s[i, :m], f[i, :m] = torch.rand(m, generator=g), torch.randn(m, 8, generator=g)
    got = mmr_batched(s, f, torch.isfinite(s), ks, lam)
    for i, (m, k) in enumerate(zip(lengths, ks)):
        assert torch.equal(got[i], mmr(s[i, :m], f[i, :m], k, lam=lam))


def test_recycle_preserves_the_pool_weighted_sum_and_the_other_kept_tokens():
    """``recycle``: the lowest-scored kept slots become the score-weighted means of groups of (pruned + freed)
    tokens, so the pool's weighted sum is preserved; the rest of the kept tokens are untouched."""
    from tokenprune.reduce import recycle

    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 6, generator=g)
    s = torch.rand(12, generator=g) + 0.1
    keep = torch.tensor([0, 2, 3, 5, 7, 9])
    pruned = torch.tensor([i for i in range(12) if i not in keep.tolist()])
    out = recycle(x, keep, pruned, s, recycled=2)
    slots = torch.argsort(s[keep], stable=True)[:2]
    others = [i for i in range(6) if i not in slots.tolist()]
    assert torch.equal(out[others], x[keep][others])
    pool = torch.cat([keep[slots], pruned])
    seeds = pool[torch.argsort(s[pool], descending=True, stable=True)[:2]]
    f = torch.nn.functional.normalize(x, dim=-1)
    group = (f[pool] @ f[seeds].T).argmax(1)
    weights = torch.stack([s[pool][group == j].sum() for j in range(2)])
    torch.testing.assert_close((weights[:, None] * out[slots]).sum(0), (s[pool, None] * x[pool]).sum(0))
    # with nothing pruned, or one kept token, recycling is a drop
    assert torch.equal(recycle(x, keep, pruned[:0], s), x[keep])
    assert torch.equal(recycle(x, keep[:1], pruned, s), x[keep[:1]])


def test_transform_identity_is_drop_and_mass_is_preserved():
    """``transform``: alpha = 0 is drop; every pruned token's mass is spread over the kept ones (total preserved);
    a tiny temperature gives merge's hard nearest assignment with equal weights."""
    from tokenprune.reduce import drop, merge, transform

    g = torch.Generator().manual_seed(3)
    x = torch.randn(10, 5, generator=g)
    s = torch.rand(10, generator=g)
    keep = torch.tensor([1, 4, 6, 8])
    pruned = torch.tensor([0, 2, 3, 5, 7, 9])
    assert torch.equal(transform(x, keep, pruned, s, alpha=0.0), drop(x, keep, pruned, s))
    out = transform(x, keep, pruned, s, tau=0.5)
    f = torch.nn.functional.normalize(x, dim=-1)
    a = ((f[pruned] @ f[keep].T) / 0.5).softmax(-1)
    torch.testing.assert_close(((1 + a.sum(0))[:, None] * out).sum(0), x[keep].sum(0) + x[pruned].sum(0))
    torch.testing.assert_close(transform(x, keep, pruned, s, tau=1e-4), merge(x, keep, pruned, torch.ones(10)))


def test_recycle_with_duplicate_tokens_leaves_no_group_empty():
    """Identical pool tokens (padding, repeated newline rows) used to leave a seed's group empty -> 0/0 (found by the
    long property-based profile on LLaVA-OneVision)."""
    from tokenprune.reduce import recycle

    x = torch.ones(8, 4)
    out = recycle(x, torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7]), torch.linspace(1, 2, 8), recycled=3)
    assert torch.isfinite(out).all() and torch.allclose(out, torch.ones(4, 4))


def test_contextual_centres_follow_the_selector():
    """At most k − 1 centres (the top kept token stays dominant; k = 1 drops the pruned tokens), and a score tie
    between a dominant token and a centre is resolved as the ``visionzip`` selector resolves it."""
    from tokenprune.reduce import merge_counts
    from tokenprune.selection import visionzip

    g = torch.Generator().manual_seed(2)
    x = torch.randn(10, 6, generator=g)
    scores = torch.tensor([3.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    keep = visionzip(scores, None, 3, contextual=1)
    assert keep.tolist() == [0, 1, 2]  # dominant 0, 1 (the tie at 1.0 goes to the lower index), centre 2
    pruned = torch.arange(3, 10)
    out = merge(x, keep, pruned, scores, contextual=1)
    assert torch.equal(out[:2], x[:2]) and not torch.equal(out[2], x[2])  # the centre merged, not dominant 1
    # contextual >= k: k - 1 centres, the highest-scored kept token untouched
    out = merge(x, keep, pruned, scores, contextual=5)
    assert torch.equal(out[0], x[0]) and not torch.equal(out[1], x[1]) and not torch.equal(out[2], x[2])
    # k = 1: nothing to merge into
    one = torch.tensor([0])
    assert torch.equal(merge(x, one, torch.arange(1, 10), scores, contextual=3), x[:1])
    rows, counts = merge_counts(x, one, torch.arange(1, 10), scores, None, contextual=3)
    assert torch.equal(rows, x[:1]) and counts.tolist() == [1.0]
