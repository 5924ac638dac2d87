"""Benchmark (not a test): what the vision-side captures of flowcut / vflow / zoo / cls_attention cost, on a
LLaVA-1.5-7B geometry (CLIP ViT-L/14-336: 24 layers, width 1024, 16 heads, 577 tokens; projector 1024 -> 4096 ->
4096; random weights), next to the vision tower's own forward pass.

    python -m evals.capture_cost [--repeats 3] [--threads 1] [--directions 64 16]

Each capture runs the adapter's own code on the tower's hidden states, as the runtime does after the tower. The LLM
prefill these methods shorten is not run here (a 7B model); its FLOPs are stated for scale.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def build():
    import transformers as tf

    from tokenprune.adapters.llava import LlavaAdapter

    vision = tf.CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                 image_size=336, patch_size=14, projection_dim=768)
    text = tf.LlamaConfig(vocab_size=300, hidden_size=4096, intermediate_size=256, num_hidden_layers=1,
                          num_attention_heads=32, num_key_value_heads=32)
    model = tf.LlavaForConditionalGeneration(tf.LlavaConfig(vision_config=vision, text_config=text,
                                                            image_token_id=299)).eval()
    return model, LlavaAdapter(model)


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--directions", type=int, nargs="+", default=[64, 16])
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model, adapter = build()
    pixels = torch.randn(1, 3, 336, 336)
    tower = model.model.vision_tower
    with torch.no_grad():
        out = tower(pixels, output_hidden_states=True)
        rows = [("vision tower forward (baseline)", median_ms(lambda: tower(pixels, output_hidden_states=True),
                                                               a.repeats))]
        rows.append(("cls_attention (visionzip, holov)", median_ms(lambda: adapter.cls_attention(out), a.repeats)))
        rows.append(("flowcut (22 layers of q/k/v)", median_ms(lambda: adapter.vision_flow(out), a.repeats)))
        rows.append(("vflow (full attention, 1 layer)", median_ms(lambda: adapter.vision_global(out, None, None, 34.76),
                                                                  a.repeats)))
        rows.append(("vflow entropy map", median_ms(lambda: adapter.patch_entropies(pixels, None), a.repeats)))
        for n in a.directions:
            rows.append((f"zoo ({n} directions)", median_ms(lambda: adapter.projector_sensitivity(out, n, 0.01, 0),
                                                            a.repeats)))
    base = rows[0][1]
    print(f"threads={torch.get_num_threads()}; a LLaVA-1.5-7B prefill of ~640 tokens is ~8.6 TFLOPs "
          f"(the tower here ~0.35 TFLOPs)")
    for name, ms in rows:
        print(f"{name:<36s} {ms:9.1f} ms  {ms / base:6.1%} of the tower")


if __name__ == "__main__":
    main()
