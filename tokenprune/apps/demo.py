"""``tokenprune demo``: dense vs pruned side by side on a model built in code (no downloads)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..api import pruned
from ..config import PruneConfig
from .overlay import overlay, save_gif, strip

#: LLaVA-1.5-shaped geometry: a 336/14 CLIP-style tower (576 visual tokens) and a small GQA Llama.
DEMO_GEOMETRY = dict(layers=6, hidden=768, heads=12, kv_heads=4, inter=2048)

DEMO_METHODS: list[tuple[str, dict[str, Any]]] = [
    ("fastv", dict(keep=144, layer=2)),
    ("fastv", dict(keep=64, layer=2)),
    ("debiased-fastv", dict(keep=144, layer=2)),
    ("divprune", dict(keep=144)),
    ("visionzip", dict(keep=144)),
    ("uniform", dict(keep=144)),
    ("random", dict(keep=144)),
]


@dataclass
class DemoRow:
    method: str
    visual_tokens: int
    prefill_ms: float
    speedup: float
    flops_ratio: float
    tokens: list[int]
    same_as_dense: bool


def build_demo_model(seed: int = 0) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """A random-weight LLaVA-1.5-shaped model and a two-prompt batch (one image each)."""
    import transformers as tf

    from ..testing.tiny import IMAGE, PAD, text_kwargs

    clip = tf.CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                               image_size=336, patch_size=14)
    g = DEMO_GEOMETRY
    text = tf.LlamaConfig(**text_kwargs(g["layers"], g["hidden"], g["heads"], g["kv_heads"], g["inter"]))
    cfg = tf.LlavaConfig(vision_config=clip, text_config=text, image_token_id=IMAGE, pad_token_id=PAD)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = tf.LlavaForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = PAD
    return model, _demo_inputs(model)


def _demo_inputs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from ..testing.tiny import BOS, IMAGE

    gen = torch.Generator().manual_seed(0)
    rows = []
    for r in range(2):
        ids = [BOS] + torch.randint(3, 140, (8 + r,), generator=gen).tolist() + [IMAGE] * 576
        ids += torch.randint(3, 140, (24,), generator=gen).tolist()
        rows.append(ids)
    n = max(len(r) for r in rows)
    input_ids = torch.zeros(2, n, dtype=torch.long)
    mask = torch.zeros(2, n, dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, n - len(ids):], mask[i, n - len(ids):] = torch.tensor(ids), 1
    return {"input_ids": input_ids, "attention_mask": mask,
            "pixel_values": torch.rand(2, 3, 336, 336, generator=gen)}


def _prefill_ms(model: torch.nn.Module, inputs: dict, repeats: int) -> float:
    from ..timing import median_ms

    with torch.no_grad():
        return median_ms(lambda: model(**inputs), repeats)


def run_demo(repeats: int = 3, new_tokens: int = 8, methods: list[tuple[str, dict]] | None = None,
             progress: Any = None) -> list[DemoRow]:
    """Times dense and each method on the demo model; greedy continuations are compared with dense."""
    model, inputs = build_demo_model()
    gen_kw = dict(max_new_tokens=new_tokens, do_sample=False, suppress_tokens=[2, 150])
    with torch.no_grad():
        dense_tokens = model.generate(**inputs, **gen_kw)[:, -new_tokens:]
    dense_ms = _prefill_ms(model, inputs, repeats)
    rows = [DemoRow("dense", 576, dense_ms, 1.0, 1.0, dense_tokens[0].tolist(), True)]
    for name, kw in methods or DEMO_METHODS:
        cfg = PruneConfig.from_preset(name, **kw)
        with pruned(model, cfg) as h:
            ms = _prefill_ms(model, inputs, repeats)
            with torch.no_grad():
                toks = model.generate(**inputs, **gen_kw)[:, -new_tokens:]
            st = h.stats
        label = f"{name} keep={kw.get('keep')}" + (f" @L{cfg.stages[0].at}" if cfg.stages[0].layer is not None else " pre_llm")
        rows.append(DemoRow(label, st.stages[-1].kept[0], ms, dense_ms / ms, st.flops_ratio, toks[0].tolist(),
                            bool(torch.equal(toks, dense_tokens))))
        if progress is not None:
            progress()
    return rows


# --- the embedded ShapesVQA model -------------------------------------------------------------------------------

EMBEDDED_METHODS: list[tuple[str, dict[str, Any]]] = [
    ("fastv", dict(keep=144, layer=2)),
    ("fastv", dict(keep=64, layer=2)),
    ("divprune", dict(keep=64)),
    ("visionzip", dict(keep=64)),
    ("idpruner", dict(keep=64)),
    ("random", dict(keep=64)),
]


@dataclass
class EmbeddedRow:
    method: str
    visual_tokens: int
    prefill_ms: float
    speedup: float
    flops_ratio: float
    answers: list[str]
    correct: int
    image: str | None = None


#: Qwen ShapesVQA model: images carry 126–160 tokens and clips 324, so budgets are fractions
QWEN_METHODS: list[tuple[str, dict[str, Any]]] = [
    ("fastv", dict(keep=0.25, layer=2)),
    ("divprune", dict(keep=0.25)),
    ("visionzip", dict(keep=0.25)),
    ("random", dict(keep=0.25)),
]
VIDEO_METHODS: list[tuple[str, dict[str, Any]]] = [
    ("video-evs", dict(keep=0.25)),
    ("fastv", dict(keep=0.25, layer=2)),
    ("divprune", dict(keep=0.25)),
    ("random", dict(keep=0.25)),
]


def has_embedded(name: str = "embedded") -> bool:
    from ..shapesvqa.embedded import NAMES

    return (NAMES[name] / "config.json").is_file()


def default_methods(name: str, video: bool) -> list[tuple[str, dict[str, Any]]]:
    if video:
        return VIDEO_METHODS
    return QWEN_METHODS if name == "embedded-qwen" else EMBEDDED_METHODS


def run_embedded_demo(repeats: int = 3, out_dir: str | None = "demo_out", samples: int = 8,
                      methods: list[tuple[str, dict]] | None = None, progress: Any = None,
                      model_name: str = "embedded", video: bool = False) -> list[EmbeddedRow]:
    """Dense and each method on a shipped ShapesVQA model (``embedded`` or ``embedded-qwen``; ``video``: clips,
    Qwen only): answers to ``samples`` test questions, prefill time of the batch, and (``out_dir``) one PNG per
    method with the tokens kept for the first image (a strip of its temporal steps for a clip)."""
    import os

    from ..shapesvqa.embedded import batch_inputs, load, split_examples, visual_tokens
    from ..timing import median_ms

    model, processor = load(model_name)
    exs = split_examples(processor, "clips-test" if video else "test", samples)
    inputs = batch_inputs(processor, exs)
    gold = [e.qa.answer for e in exs]
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)

    def answers() -> list[str]:
        return processor.tokenizer.convert_ids_to_tokens(model(**inputs).logits[:, -1].argmax(-1).tolist())

    def picture(kept: list[int]) -> Any:
        if "video_grid_thw" in inputs:
            t, h, w = inputs["video_grid_thw"][0].tolist()
            return strip(exs[0].frames(), kept, (t, h // 2, w // 2))
        if "image_grid_thw" in inputs:
            _, h, w = inputs["image_grid_thw"][0].tolist()
            return overlay(exs[0].image(), kept, (h // 2, w // 2))
        return overlay(exs[0].image(), kept)

    first_item = round(visual_tokens(model, [{k: v[:1] for k, v in inputs.items() if k == "input_ids"}]))
    with torch.no_grad():
        dense_ms = median_ms(lambda: model(**inputs), repeats)
        ans = answers()
        rows = [EmbeddedRow("dense", first_item, dense_ms, 1.0, 1.0, ans, sum(a == g for a, g in zip(ans, gold)))]
        for name, kw in methods or default_methods(model_name, video):
            cfg = PruneConfig.from_preset(name, num_layers=model.config.text_config.num_hidden_layers, **kw)
            with pruned(model, cfg) as h:
                ms = median_ms(lambda: model(**inputs), repeats)
                ans = answers()
                st = h.stats
            label = f"{name} {kw['keep']}" + (f" @L{cfg.stages[0].at}" if cfg.stages[0].layer is not None else " pre_llm")
            path = None
            if out_dir:
                path = os.path.join(out_dir, f"{name}_{kw['keep']}.png")
                picture(st.stages[-1].kept_indices[0][0]).save(path)
                if "video_grid_thw" in inputs:  # the clip itself, kept tokens per frame
                    t, gh, gw = inputs["video_grid_thw"][0].tolist()
                    save_gif(exs[0].frames(), st.stages[-1].kept_indices[0][0], (t, gh // 2, gw // 2),
                             path[:-4] + ".gif")
            rows.append(EmbeddedRow(label, st.stages[-1].kept[0], ms, dense_ms / ms, st.flops_ratio, ans,
                                    sum(a == g for a, g in zip(ans, gold)), path))
            if progress is not None:
                progress()
    return rows
