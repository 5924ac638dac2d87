"""CDPruner: the ``dpp`` selector against an independent greedy-MAP re-implementation (Schur complements in
float64, no incremental Cholesky), and the ``text_relevance`` scorer on constructed cases."""
import pytest
import torch

from tokenprune.registry import SCORERS
from tokenprune.runtime.items import MediaItem
from tokenprune.runtime.stage import build_view
from tokenprune.selection import dpp, dpp_batched


def greedy_map(q: torch.Tensor, x: torch.Tensor, k: int) -> list[int]:
    """Greedy MAP of the DPP with L = diag(q) cos(X) diag(q): each step adds argmax_i det(L_{S+i}) / det(L_S),
    computed as the Schur complement L_ii - L_iS L_SS^-1 L_Si (ties to the lower index)."""
    f = torch.nn.functional.normalize(x.double(), dim=-1)
    L = q.double()[:, None] * (f @ f.T) * q.double()[None]
    S: list[int] = []
    for _ in range(k):
        gain = torch.full((len(q),), -1.0, dtype=torch.float64)
        for i in range(len(q)):
            if i not in S:
                gain[i] = L[i, i] - (L[i, S] @ torch.linalg.solve(L[S][:, S], L[S, i]) if S else 0.0)
        S.append(int(torch.argmax(gain)))
    return sorted(S)


def test_dpp_equals_an_independent_greedy_map():
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        v = int(torch.randint(5, 60, (1,), generator=g))
        d = int(torch.randint(8, 64, (1,), generator=g))
        q = torch.rand(v, generator=g) + 1e-2
        x = torch.randn(v, d, generator=g)
        k = int(torch.randint(1, max(2, min(v, d) // 2), (1,), generator=g))
        assert dpp(q, x, k).tolist() == greedy_map(q, x, k)


def test_dpp_known_answers():
    # two identical tokens: the second adds nothing (det 0), so a distinct one is taken instead
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert dpp(torch.tensor([1.0, 0.9, 0.5]), x, 2).tolist() == [0, 2]
    # equal features everywhere: only relevance matters after the first pick's rank is used up -> by score
    assert dpp(torch.tensor([0.2, 0.9, 0.5, 0.7]), torch.ones(4, 3), 3).tolist() == [1, 2, 3]


def test_dpp_beyond_the_feature_rank_and_batched_prefixes():
    g = torch.Generator().manual_seed(1)
    q, x = torch.rand(40, generator=g) + 0.1, torch.randn(40, 4, generator=g)
    sel = dpp(q, x, 30)  # rank 4: 26 picks come from the scores
    assert sel.unique().numel() == 30
    qs, xs = torch.rand(3, 20, generator=g) + 0.1, torch.randn(3, 20, 8, generator=g)
    valid = torch.ones(3, 20, dtype=torch.bool)
    valid[2, 15:] = False
    out = dpp_batched(qs, xs, valid, [5, 3, 7])
    for i, k in enumerate([5, 3, 7]):
        n = int(valid[i].sum())
        assert out[i].tolist() == dpp(qs[i, :n], xs[i, :n], k).tolist()


def _view(hidden: torch.Tensor, n_vis: int, start: int = 1):
    n = hidden.shape[1]
    item = MediaItem(0, "image", torch.arange(start, start + n_vis), torch.arange(n_vis), n_vis)
    return build_view(hidden, torch.ones(1, n, dtype=torch.bool), [[item]], [[2]], None,
                      torch.Generator().manual_seed(0), None)


@pytest.mark.parametrize("negate", [False, True])
def test_text_relevance_constructed(negate):
    """Visual tokens 1..4 (axes e0..e3), text after them = e2: with ``negate=False`` token e2 is the most relevant
    (score 1) and the orthogonal ones tie at the bottom; ``negate`` reverses the order as CDPruner's code does."""
    e = torch.eye(6)
    hidden = torch.stack([e[5], e[0], e[1], e[2], e[3], e[2]])[None]  # BOS-like, 4 visual, 1 text after
    s = SCORERS.get("text_relevance")(_view(hidden, 4), negate=negate)[0]
    assert s.min() > 0 and s.max() == pytest.approx(1.0)
    best = int(s.argmax()) if not negate else int(s.argmin())
    assert best == 2
    # text="all" also reads the token before the image (e5, orthogonal to all): same order
    s_all = SCORERS.get("text_relevance")(_view(hidden, 4), negate=negate, text="all")[0]
    assert int(s_all.argmax() if not negate else s_all.argmin()) == 2
