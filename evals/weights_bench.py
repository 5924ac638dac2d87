"""Prefill latency of a weight-pruned vs dense backbone (a benchmark, not a test).

    python -m evals.weights_bench [--hidden 1024 --layers 8 --mlp 0.2,0.4 --rounds 7 --out evals/weights_bench_cpu.json]

A random-weight LLaVA-architecture model (Llama LM: hidden 1024, 8 layers, 16 heads / 4 KV heads, MLP 2816) gets
576 visual + 48 text tokens; the LM prefill (vision tower excluded) is timed dense and pruned in interleaved rounds
(median). Reported next to the LM parameter ratio and the analytic LM FLOP ratio.
"""
from __future__ import annotations

import argparse
import copy
import platform

import torch

from tokenprune.timing import interleaved_ms
from tokenprune.weights import WeightSpec, prune
from tokenprune.results import write_json


def build(hidden: int, layers: int, seed: int = 0):
    import transformers as tf

    from tokenprune.testing.tiny import IMAGE, PAD, text_kwargs

    clip = tf.CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                               image_size=336, patch_size=14)
    text = tf.LlamaConfig(**text_kwargs(layers, hidden, hidden // 64, hidden // 256, int(hidden * 2.75)))
    cfg = tf.LlavaConfig(vision_config=clip, text_config=text, image_token_id=IMAGE, pad_token_id=PAD)
    torch.manual_seed(seed)
    return tf.LlavaForConditionalGeneration(cfg).eval()


def inputs(seed: int = 0, text: int = 48):
    from tokenprune.testing.tiny import IMAGE

    g = torch.Generator().manual_seed(seed)
    ids = [1] + [IMAGE] * 576 + torch.randint(3, 140, (text,), generator=g).tolist()
    return {"input_ids": torch.tensor([ids]), "pixel_values": torch.rand(1, 3, 336, 336, generator=g)}


def lm_flops(model, n: int) -> float:
    tc = model.config.text_config
    d = tc.hidden_size
    total = 0.0
    for layer in model.model.language_model.layers:
        q, kv, m = layer.self_attn.q_proj.out_features, layer.self_attn.k_proj.out_features, layer.mlp.up_proj.out_features
        total += 2 * n * d * (2 * q + 2 * kv) + 2 * n * n * q * 2 + 2 * n * d * 3 * m
    return total


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--mlp", default="0.2,0.4")
    ap.add_argument("--kv-groups", type=int, default=1, help="also measure each MLP ratio with this many KV groups removed")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    dense = build(args.hidden, args.layers)
    x = inputs()
    calib = [inputs(s) for s in range(2)]
    variants = {"dense": dense}
    for f in [float(v) for v in args.mlp.split(",")]:
        for kv in sorted({0, args.kv_groups}):
            m = copy.deepcopy(dense)
            prune(m, WeightSpec(mlp=f, kv_groups=kv), calib)
            variants[f"mlp {f:.0%}" + (f" + {kv} KV group" if kv else "")] = m
    embeds = {}
    with torch.no_grad():
        for k, m in variants.items():
            cap = {}
            h = m.model.language_model.register_forward_pre_hook(lambda mod, a, kw: cap.update(kw), with_kwargs=True)
            m(**x)
            h.remove()
            embeds[k] = cap
        fns = {k: (lambda m=m, kw=embeds[k]: m.model.language_model(inputs_embeds=kw["inputs_embeds"],
                                                                     position_ids=kw.get("position_ids")))
               for k, m in variants.items()}
        ms = interleaved_ms(fns, args.rounds)
    n = x["input_ids"].shape[1]
    lm_params = {k: sum(p.numel() for p in m.model.language_model.layers.parameters()) for k, m in variants.items()}
    rows = []
    for k, m in variants.items():
        rows.append({"variant": k, "lm_prefill_ms": ms[k], "speedup": ms["dense"] / ms[k],
                     "layer_param_ratio": lm_params[k] / lm_params["dense"],
                     "flop_ratio": lm_flops(m, n) / lm_flops(dense, n),
                     "intermediate": m.config.text_config.intermediate_size,
                     "kv_heads": m.config.text_config.num_key_value_heads})
    result = {"hidden": args.hidden, "layers": args.layers, "tokens": n, "rounds": args.rounds,
              "threads": torch.get_num_threads(), "machine": platform.machine(), "rows": rows}
    for r in rows:
        print(f"{r['variant']:<22} {r['lm_prefill_ms']:8.1f} ms  speedup {r['speedup']:.2f}x  "
              f"layer params {r['layer_param_ratio']:.3f}  FLOPs {r['flop_ratio']:.3f}  ideal {1 / r['flop_ratio']:.2f}x")
    return write_json(args.out, result)


if __name__ == "__main__":
    main()
