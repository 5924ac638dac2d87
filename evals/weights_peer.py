"""Weight pruning, tokenprune vs Torch-Pruning, side by side on the embedded ShapesVQA model's language backbone
(a study, not a test; needs ``pip install 'tokenprune[peer]'``).

    python -m evals.weights_peer --limit 1000 --ratios 0.3 0.5 --out evals/weights_peer.json

Same backbone, same MLP widths (the stock width rounded to 32; Torch-Pruning gets the matching ratio and
``round_to=32``), same 32 calibration scenes. Ours: every ``--method``, without and with least-squares
reconstruction (ZipLM always reconstructs). Torch-Pruning 1.6: magnitude (L2, mean over the group), Taylor, Taylor
``multivariable=True`` (LLM-Pruner's vectorized form) and activation (‖X_j‖ of ``down_proj``'s input, the same
statistic Wanda-sp uses), MLP groups only (it cannot remove KV groups; its head pruning does not run on this
attention, see docs/weights.md). Per row: accuracy (overall, per kind), the list of per-question hits (for paired
tests), LM parameters, calibration seconds and peak RSS; one export/reload check per side.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time

import torch

from tokenprune.apps.quality import accuracy, prepare
from tokenprune.results import write_json
from tokenprune.shapesvqa import model as M
from tokenprune.timing import CpuPeak
from tokenprune.weights import WeightSpec, export, prune
from tokenprune.weights.pipeline import calibration_batches

OURS = ["wanda-sp", "flap", "taylor", "taylor-pm", "cfsp", "ziplm"]
PEER = ["magnitude", "taylor", "taylor-mv", "activation"]


def _lm_params(model) -> int:
    return sum(p.numel() for p in model.model.language_model.parameters())


def _hits(model, processor, exs, inputs) -> tuple[dict, list[int]]:
    from tokenprune.apps.quality import answers

    vocab = processor.tokenizer.convert_ids_to_tokens(list(range(model.config.text_config.vocab_size)))
    with torch.no_grad():
        preds, _ = answers(model, inputs, vocab)
    return accuracy(model, processor, exs, inputs), [int(p == e.qa.answer) for p, e in zip(preds, exs)]


def _loss(model, batch) -> torch.Tensor:
    """Next-token loss on the text tokens (what our taylor uses)."""
    out = model(**batch)
    labels = batch["input_ids"][:, 1:].clone()
    labels[labels == model.config.image_token_id] = -100
    return torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.shape[-1]).float(),
                                             labels.reshape(-1), ignore_index=-100)


def peer_prune(model, criterion: str, width: int, calib: list[dict]) -> None:
    """Torch-Pruning on every MLP of the language backbone (gate/up out-channels with down_proj's inputs)."""
    import torch_pruning as tp

    lm = model.model.language_model
    m = lm.layers[0].mlp.gate_proj.out_features
    if criterion == "magnitude":
        imp = tp.importance.GroupMagnitudeImportance(p=2)
    elif criterion in ("taylor", "taylor-mv"):
        imp = tp.importance.GroupTaylorImportance(multivariable=criterion == "taylor-mv")
    else:
        imp = tp.importance.ActivationImportance()
        sq = [torch.zeros(m, dtype=torch.float64) for _ in lm.layers]
        def grab(mod, a, i):  # a pre-hook must return None, or its value replaces the input
            sq[i].add_((a[0].detach().double() ** 2).reshape(-1, m).sum(0))

        hooks = [layer.mlp.down_proj.register_forward_pre_hook(lambda mod, a, i=i: grab(mod, a, i))
                 for i, layer in enumerate(lm.layers)]
        with torch.no_grad():
            for b in calib:
                model(**b)
        for h in hooks:
            h.remove()
        for layer, s in zip(lm.layers, sq):
            layer.mlp.down_proj._importance = s.sqrt().float()
    if criterion in ("taylor", "taylor-mv"):
        model.zero_grad()
        for b in calib:
            _loss(model, b).backward()
    ignored = [lin for layer in lm.layers for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj,
                                                    layer.self_attn.v_proj, layer.self_attn.o_proj,
                                                    layer.mlp.down_proj)]
    example = {"inputs_embeds": torch.randn(1, 8, lm.config.hidden_size)}
    pruner = tp.pruner.BasePruner(lm, example, importance=imp, pruning_ratio=1 - width / m, round_to=32,
                                  ignored_layers=ignored, root_module_types=[torch.nn.Linear],
                                  output_transform=lambda out: out.last_hidden_state)
    pruner.step()
    model.zero_grad(set_to_none=True)
    widths = {layer.mlp.gate_proj.out_features for layer in lm.layers}
    if widths != {width}:
        raise RuntimeError(f"Torch-Pruning left widths {widths}, asked {width}")
    model.config.text_config.intermediate_size = width


def _reloads(model, processor, inputs, plan=None) -> bool:
    from transformers import AutoModelForImageTextToText

    with tempfile.TemporaryDirectory() as d:
        if plan is not None:
            export(model, plan, f"{d}/m")
        else:
            model.save_pretrained(f"{d}/m")
        again = AutoModelForImageTextToText.from_pretrained(f"{d}/m", local_files_only=True).eval()
        with torch.no_grad():
            return bool(torch.equal(again(**inputs[0]).logits, model(**inputs[0]).logits))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    ap.add_argument("--calib-samples", type=int, default=32)
    ap.add_argument("--methods", nargs="+", default=OURS)
    ap.add_argument("--peer", nargs="+", default=PEER)
    ap.add_argument("--reconstruct", nargs="*", default=["wanda-sp", "flap"],
                    help="methods also run with reconstruction (ziplm always reconstructs)")
    ap.add_argument("--damp", type=float, default=WeightSpec.damp, help="relative damping of our reconstruction")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from tqdm import tqdm

    model, processor = M.load("embedded")
    exs, inputs = prepare(processor, "test", args.limit, 16)
    calib = calibration_batches(processor, "synthetic", args.calib_samples)
    dense, dense_hits = _hits(model, processor, exs, inputs)
    print(f"dense: {dense['accuracy']:.3f} on {len(exs)} test questions")
    jobs = [("ours", meth, r, rec) for r in args.ratios for meth in args.methods
            for rec in ((True,) if meth == "ziplm" else (False, True) if meth in args.reconstruct else (False,))]
    jobs += [("torch-pruning", crit, r, False) for r in args.ratios for crit in args.peer]
    rows, reload_checked = [], set()
    for side, name, ratio, rec in tqdm(jobs, desc="variants"):
        m = copy.deepcopy(model)
        width = WeightSpec(mlp=ratio).mlp_width(m.config.text_config.intermediate_size)
        peak = CpuPeak()
        peak.start()
        t = time.perf_counter()
        plan = None
        if side == "ours":
            plan, _ = prune(m, WeightSpec(mlp=ratio, method=name, reconstruct=rec, damp=args.damp), calib)
        else:
            peer_prune(m, name, width, calib)
        secs, rss = time.perf_counter() - t, peak.bytes()
        m.eval()
        r, hits = _hits(m, processor, exs, inputs)
        row = {"side": side, "method": name, "reconstruct": rec, "mlp": ratio, "width": width, **r, "hits": hits,
               "lm_params": _lm_params(m), "calibration_s": secs, "calibration_peak_rss": rss}
        if (side, ratio) not in reload_checked:
            row["reload_identical"] = _reloads(m, processor, inputs, plan)
            reload_checked.add((side, ratio))
        rows.append(row)
        tqdm.write(f"{side:13} {name:10} rec={str(rec):5} mlp -{ratio:.0%} (width {width}): acc {r['accuracy']:.3f} "
                   f"(loc {r['localized']:.3f} glob {r['global']:.3f})  calib {secs:.1f}s")
        result = {"limit": len(exs), "calib_samples": args.calib_samples, "dense": dense, "dense_hits": dense_hits,
                  "dense_lm_params": _lm_params(model), "rows": rows, "threads": torch.get_num_threads(),
                  "complete": len(rows) == len(jobs)}
        if args.out:  # after every variant: a crash late in the grid keeps what was measured
            write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
