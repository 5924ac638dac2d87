"""``video-evs`` (the ``temporal`` scorer with top-k) keeps exactly the tokens vLLM's own Efficient Video Sampling
keeps, on the same video embeddings — checked against vLLM's ``compute_retention_mask`` itself (no engine)."""
import pytest
import torch

pytestmark = pytest.mark.vllm


def tokenprune_kept(feats: torch.Tensor, grid: tuple[int, int, int], keep: int) -> torch.Tensor:
    import tokenprune  # noqa: F401  (registers the methods)
    from tokenprune.registry import SCORERS, SELECTORS
    from tokenprune.runtime.items import MediaItem
    from tokenprune.runtime.stage import build_view

    n = feats.shape[0]
    item = MediaItem(0, "video", torch.arange(n), torch.arange(n), n, grid=grid)
    view = build_view(feats[None], torch.ones(1, n, dtype=torch.bool), [[item]], [[n]], None,
                      torch.Generator().manual_seed(0), None)
    scores = SCORERS.get("temporal")(view)[0]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[SELECTORS.get("topk")(scores, feats, keep)] = True
    return mask


@pytest.mark.parametrize("seed", range(12))
def test_same_kept_set_as_vllm_evs(seed):
    """Random videos whose cells are static (exact copies, or copies with float noise: near-ties), or change: for
    pruning rates 0.5 / 0.75 / 0.9 the kept masks are identical."""
    from vllm.multimodal.video_prune.evs import compute_retained_tokens_count, compute_retention_mask

    g = torch.Generator().manual_seed(seed)
    t, h, w, d = 6, 4, 6, 32  # LLM-token grid (temporal patches, rows, columns), hidden size
    base = torch.randn(1, h * w, d, generator=g).repeat(t, 1, 1)
    scale = 10.0 ** -torch.randint(2, 7, (t, h * w, 1), generator=g).float()
    noise = torch.randn(t, h * w, d, generator=g) * scale * (torch.rand(t, h * w, 1, generator=g) < 0.6)
    moving = torch.randn(t, h * w, d, generator=g) * (torch.rand(t, h * w, 1, generator=g) < 0.15)
    feats = (base + noise + moving).reshape(t * h * w, d)
    for q in (0.5, 0.75, 0.9):
        ref = compute_retention_mask(feats, (t, 2 * h, 2 * w), spatial_merge_size=2, q=q)
        keep = compute_retained_tokens_count(h * w, t, q)
        assert torch.equal(tokenprune_kept(feats, (t, h, w), keep), ref), q
