"""Matrix entropy: dual == primal, leave-one-out equals brute force, the scorer runs in the pipeline."""
import pytest
import torch

import tokenprune as tp
from tokenprune import ConfigError, PruneConfig, Stage
from tokenprune.scoring.entropy import leave_one_out_entropy, matrix_entropy

from ..conftest import GEN, batch, tiny


def brute(z: torch.Tensor) -> torch.Tensor:
    s = matrix_entropy(z)
    return torch.stack([s - matrix_entropy(torch.cat([z[:i], z[i + 1:]])) for i in range(z.shape[0])])


def primal(z: torch.Tensor) -> torch.Tensor:
    ev = torch.linalg.eigvalsh((z.double() @ z.double().T)).clamp(min=0)
    p = ev / ev.sum()
    p = p[p > 0]
    return -(p * p.log()).sum()


@pytest.mark.parametrize("shape", [(20, 64), (64, 12), (30, 30)])
def test_dual_gram_entropy_equals_primal(shape):
    z = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(matrix_entropy(z), primal(z))
    torch.testing.assert_close(matrix_entropy(z.T), primal(z.T))


@pytest.mark.parametrize("shape", [(24, 64), (48, 10), (16, 16)])
def test_leave_one_out_equals_brute_force(shape):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(*shape, generator=g) * torch.linspace(0.1, 3, shape[1])
    torch.testing.assert_close(leave_one_out_entropy(z), brute(z), atol=1e-9, rtol=1e-7)


def test_rank_sketch_is_exact_leave_one_out_of_the_sketch():
    z = torch.randn(40, 32, generator=torch.Generator().manual_seed(2))
    u, s, vh = torch.linalg.svd(z.double(), full_matrices=False)
    sketch = z.double() @ vh[:8].T
    torch.testing.assert_close(leave_one_out_entropy(z, rank=8), brute(sketch), atol=1e-9, rtol=1e-7)


def test_duplicate_tokens_carry_little_information():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(6, 16, generator=g)
    z = torch.cat([base, base[:1].repeat(10, 1)])  # ten copies of token 0
    values = leave_one_out_entropy(z)
    assert values[6:].max() < values[1:6].min()


def test_entropy_scorer_in_pipeline():
    with pytest.raises(ConfigError, match="Stage.rank"):
        Stage("pre_llm", scorer="entropy", rank=0)
    model = tiny("qwen2_vl")
    inputs = batch("qwen2_vl", model)
    with tp.pruned(model, PruneConfig([Stage(2, keep=0.25, scorer="entropy", rank=None)])) as h:
        cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, **GEN)
        recomputed = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False, **GEN)
        assert h.stats.stages[0].kept == [4, 5 + 4, 0]  # 16 tokens; 20 + 16 tokens; text only
    assert torch.equal(cached, recomputed)


def test_auto_stage_finds_the_entropy_collapse_layer():
    from tokenprune.scoring.entropy import matrix_entropy

    model = tiny("llava")
    inputs = batch("llava", model)
    with pytest.raises(ConfigError, match="only in-LLM stage"):
        PruneConfig([Stage("auto"), Stage(3)])
    hs = model(**inputs, output_hidden_states=True).hidden_states
    ids = inputs["input_ids"]
    items = []
    for r in range(ids.shape[0]):
        pos = (ids[r] == 150).nonzero().squeeze(1)
        items += [(r, p) for p in pos.split(16)]  # 16 tokens per image
    ent = torch.tensor([sum(float(matrix_entropy(hs[l][r, p])) for r, p in items) / len(items) for l in range(4)])
    expect = int((ent[:-1] - ent[1:]).argmax()) + 1
    with tp.pruned(model, "entropyprune") as h:
        cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, **GEN)
        recomputed = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False, **GEN)
        assert h.auto_layer == expect
        assert h.stats.stages[0].at == expect and h.stats.stages[0].kept == [4, 8, 0]
    assert torch.equal(cached, recomputed)


def test_auto_needs_three_layers():
    from tokenprune.testing.tiny import make_model

    model = make_model("llava", layers=2)
    with pytest.raises(ConfigError, match="at least 3 layers"):
        tp.apply(model, "entropyprune")
