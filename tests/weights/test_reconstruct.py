"""Reconstruction (least squares on calibration Gram matrices), ZipLM-style OBS selection, CFSP and per-matrix
Taylor: known answers against torch.linalg.lstsq and a brute-force OBS, identity at ratio 0, stock reload."""
import pytest
import torch
from transformers import AutoModelForImageTextToText

from tokenprune.errors import ConfigError
from tokenprune.testing.tiny import make_model
from tokenprune.weights import WeightSpec, export, prune
from tokenprune.weights.reconstruct import inverse_hessian, least_squares, obs_greedy

from ..conftest import GEN, batch
from .test_weights import calib

pytestmark = pytest.mark.filterwarnings("ignore:FLAP bias compensation is off")


def _inputs_of(model, module, batches):
    """Every calibration token's input to ``module`` (N, in), float64."""
    rows = []
    h = module.register_forward_pre_hook(lambda m, a: rows.append(a[0].detach().reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        for b in batches:
            model(**b)
    h.remove()
    return torch.cat(rows).double()


@pytest.mark.parametrize("bias", [False, True])
def test_reconstruction_is_the_least_squares_optimum(bias):
    model = make_model("llava")
    batches = calib("llava", model, n=6)
    lm = model.model.language_model
    x_mlp = _inputs_of(model, lm.layers[1].mlp.down_proj, batches)
    x_att = _inputs_of(model, lm.layers[1].self_attn.o_proj, batches)
    w_mlp = lm.layers[1].mlp.down_proj.weight.detach().double().clone()
    w_att = lm.layers[1].self_attn.o_proj.weight.detach().double().clone()
    spec = WeightSpec(mlp=0.5, kv_groups=1, method="wanda-sp", reconstruct=True, damp=0.0, multiple=1,
                      bias_compensation=bias)
    plan, _ = prune(model, spec, batches)
    layer = model.model.language_model.layers[1]
    lp = plan.layers[1]
    hd = 16
    heads = torch.tensor([h * hd + i for h in lp.heads_keep for i in range(hd)])
    for x, w, keep, lin in ((x_mlp, w_mlp, torch.tensor(lp.mlp_keep), layer.mlp.down_proj),
                            (x_att, w_att, heads, layer.self_attn.o_proj)):
        xs = x[:, keep]
        if bias:
            xs = torch.cat([xs, torch.ones(len(xs), 1, dtype=xs.dtype)], 1)
        want = torch.linalg.lstsq(xs, x @ w.T, driver="gelsd").solution.T
        got = lin.weight.detach().double()
        if bias:
            got = torch.cat([got, lin.bias.detach().double()[:, None]], 1)
        # the same optimum: equal outputs on the calibration tokens (float32 weights afterwards)
        torch.testing.assert_close(xs @ got.T, xs @ want.T, atol=2e-4, rtol=1e-4)
        plain = x[:, keep] @ w[:, keep].T
        assert ((xs @ got.T - x @ w.T) ** 2).sum() < ((plain - x @ w.T) ** 2).sum()  # better than slicing


def test_least_squares_function_matches_lstsq_and_damping_shrinks():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 12, generator=g, dtype=torch.float64) + 0.5
    w = torch.randn(5, 12, generator=g, dtype=torch.float64)
    keep = torch.tensor([0, 2, 3, 7, 11])
    sol, b = least_squares(w, x.T @ x, x.sum(0), len(x), keep, damp=0.0, bias=True)
    xs = torch.cat([x[:, keep], torch.ones(300, 1, dtype=torch.float64)], 1)
    want = torch.linalg.lstsq(xs, x @ w.T).solution.T
    torch.testing.assert_close(torch.cat([sol, b[:, None]], 1), want)
    damped, _ = least_squares(w, x.T @ x, x.sum(0), len(x), keep, damp=10.0)
    undamped, _ = least_squares(w, x.T @ x, x.sum(0), len(x), keep, damp=0.0)
    assert damped.norm() < undamped.norm()


def test_obs_greedy_removes_the_cheapest_group_like_brute_force():
    """First removal = the column whose removal after the optimal re-fit of the rest costs least (brute force)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 8, generator=g, dtype=torch.float64) * torch.linspace(0.2, 2.0, 8, dtype=torch.float64)
    w = torch.randn(4, 8, generator=g, dtype=torch.float64)
    cost = []
    for j in range(8):
        keep = torch.tensor([i for i in range(8) if i != j])
        fit = torch.linalg.lstsq(x[:, keep], x @ w.T).solution
        cost.append(float(((x[:, keep] @ fit - x @ w.T) ** 2).sum()))
    order = obs_greedy(w.clone(), inverse_hessian(x.T @ x, 0.0), [torch.tensor([j]) for j in range(8)], 3)
    assert order[0] == min(range(8), key=cost.__getitem__)
    # after the greedy updates the kept columns hold the least-squares re-fit of the survivors
    w2, hinv = w.clone(), inverse_hessian(x.T @ x, 0.0)
    order = obs_greedy(w2, hinv, [torch.tensor([j]) for j in range(8)], 3)
    keep = torch.tensor(sorted(set(range(8)) - set(order)))
    fit = torch.linalg.lstsq(x[:, keep], x @ w.T).solution.T
    torch.testing.assert_close(w2[:, keep], fit, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("method", ["ziplm", "cfsp", "taylor-pm"])
def test_new_methods_export_stock_and_reload(method, tmp_path):
    model = make_model("llava")
    plan, _ = prune(model, WeightSpec(mlp=0.5, kv_groups=1, method=method, multiple=8), calib("llava", model))
    inputs = batch("llava", model)
    assert model.config.text_config.intermediate_size == 64 and model.config.text_config.num_key_value_heads == 1
    export(model, plan, tmp_path / "out")
    again = AutoModelForImageTextToText.from_pretrained(tmp_path / "out", local_files_only=True).eval()
    torch.testing.assert_close(again(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)
    model.generate(**inputs, max_new_tokens=4, do_sample=False, **GEN)


@pytest.mark.parametrize("method", ["ziplm", "wanda-sp"])
def test_ratio_zero_with_reconstruction_is_bit_identical(method):
    model = make_model("llava")
    inputs = batch("llava", model)
    dense = model(**inputs).logits
    prune(model, WeightSpec(method=method, reconstruct=True), calib("llava", model))
    assert torch.equal(model(**inputs).logits, dense)


def test_taylor_forms_differ_only_in_aggregation():
    from tokenprune.weights.backbone import backbone
    from tokenprune.weights.importance import mlp_scores
    from tokenprune.weights.stats import collect

    model = make_model("llava")
    bb = backbone(model)
    stats = collect(bb, calib("llava", model), taylor=True)
    mlp = bb.layers[0].mlp
    s_sum = mlp_scores("taylor", mlp, stats.mlp[0], stats.grads, "layers.0")
    s_pm = mlp_scores("taylor-pm", mlp, stats.mlp[0], stats.grads, "layers.0")
    g = lambda n: stats.grads[f"layers.0.mlp.{n}.weight"].double()  # noqa: E731
    parts = [(mlp.gate_proj.weight.double() * g("gate_proj")).sum(1), (mlp.up_proj.weight.double() * g("up_proj")).sum(1),
             (mlp.down_proj.weight.double() * g("down_proj")).sum(0)]
    torch.testing.assert_close(s_sum, sum(parts).abs().detach())
    torch.testing.assert_close(s_pm, (sum(p.abs() for p in parts) / 3).detach())


def test_bad_reconstruction_specs():
    model = make_model("llava")
    for kw, match in ((dict(damp=-1.0), "damp"), (dict(reconstruct="yes"), "reconstruct"),
                      (dict(method="ziplm", export="custom", mlp=0.2), "ziplm")):
        with pytest.raises(ConfigError, match=match):
            prune(model, WeightSpec(**kw), calib("llava", model))
