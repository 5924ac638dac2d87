"""Peer comparison (a benchmark, not a test): tokenprune vs AngelSlim's token_compressor (angelslim-fork 20260412)
and SparseVLM 0.1.3 on the embedded ShapesVQA model (LLaVA-1.5 architecture, 576 visual tokens), at the same kept
visual-token counts. The peers live only in .venv-peers (``bash scripts/setup_peers.sh``):

    .venv-peers/bin/python -m evals.peers --limit 200 --threads 1 --out evals/peers_cpu.json

Pairs (ours | peer): divprune | AngelSlim ``divprune``; visionzip | AngelSlim ``visionzip``; fastv-vk | AngelSlim
``special_token_based_attention`` (last text token, the layer our stage scores with); agile and fastv |
``sparsevlm_generate`` (SparseVLM's fixed-budget KV-cache entry point). Per row: accuracy on the first ``--limit``
test questions (first generated token == answer, as ``tokenprune eval`` scores), median ms/sample of one batch-1
call (prefill + ``--max-new-tokens`` greedy tokens; methods interleaved per question after a warm-up) and, where
the peer's kept index set is observable, its overlap with ours (mean |ours ∩ peer| / keep, and the fraction of
questions with identical sets), and for each AngelSlim row the paired per-question time difference to its
tokenprune counterpart. Then every method with a batched ``generate()`` runs left-padded batches of ``--batch``
questions (evals/peers_batch.py; a peer that refuses a batch gets its error). ``--path peer`` (default) runs dense
and tokenprune on the generate() path AngelSlim needs (no ``mm_encoder_outputs``), ``--only`` picks methods by
label. Compatibility shims (the peers predate transformers 5.16-5.19) are listed in ``notes`` of the JSON; see
docs/benchmarks.md "Peer comparison".
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib
import importlib.metadata as md
import inspect
import io
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from evals.peers_report import render, summarize

PEERS = {"angelslim.compressor.token_compressor.adapter": "angelslim-fork==20260412", "sparsevlm": "sparsevlm==0.1.3"}


@dataclass
class Method:
    label: str
    side: str
    keep: int | None
    run: Run
    vs: list[str] = field(default_factory=list)  # our labels to compare the kept set with
    ms: list[float] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)
    new_tokens: list[int] = field(default_factory=list)
    kept: list[set[int] | None] = field(default_factory=list)


@dataclass
class Ex:
    inputs: dict
    answer: str
    img0: int  # position of the first image token
    img_end: int  # one past the last image token


Kept = Callable[[], "set[int]"]  # the kept image indices, read after the timed call
Run = Callable[[Ex], tuple[int, int, "Kept | None"]]  # -> (first answer token id, new tokens, kept-set reader)


def require_peers() -> None:
    missing = []
    for mod, pkg in PEERS.items():
        try:
            importlib.import_module(mod)
        except Exception as e:  # ImportError, or a peer whose own imports fail
            missing.append(f"  {pkg}: {type(e).__name__}: {e}")
    if missing:
        sys.exit("evals/peers.py: peer package(s) not importable:\n" + "\n".join(missing)
                 + "\nInstall them apart from .venv with `bash scripts/setup_peers.sh`, then run "
                 "`.venv-peers/bin/python -m evals.peers`.")


def _generate(model: Any, x: Ex, max_new: int) -> Any:
    return model.generate(**x.inputs, max_new_tokens=max_new, do_sample=False, return_dict_in_generate=True)


def _local(positions: torch.Tensor, x: Ex) -> set[int]:
    """Image-local indices (0..575) of the kept sequence positions."""
    p = positions[(positions >= x.img0) & (positions < x.img_end)]
    return set((p - x.img0).tolist())


def peer_path(m: Any) -> Any:
    """generate() as AngelSlim needs it (see :func:`angelslim`): the vision tower runs inside the first forward
    instead of before it as ``mm_encoder_outputs`` (transformers >= 5.18). With ``--path peer`` the dense model and
    tokenprune take the same path, so that the timings compare the pruning, not two paths through generate()."""
    m._supports_mm_encoder_outputs = lambda: False
    return m


def dense(model: Any, max_new: int, path: str = "peer") -> Run:
    if path == "peer":
        model = peer_path(copy.deepcopy(model))

    def run(x: Ex) -> tuple[int, int, None]:
        out = _generate(model, x, max_new)
        n = x.inputs["input_ids"].shape[1]
        return int(out.sequences[0, n]), out.sequences.shape[1] - n, None
    run.model = model  # type: ignore[attr-defined]  # for the batched timing (evals.peers_batch)
    return run


def ours(model: Any, preset: str, keep: int, max_new: int, path: str = "peer") -> Run:
    import tokenprune as tp

    m = copy.deepcopy(model)
    if path == "peer":
        peer_path(m)
    handle = tp.apply(m, preset, keep=keep)

    def run(x: Ex) -> tuple[int, int, Kept]:
        out = _generate(m, x, max_new)
        n = x.inputs["input_ids"].shape[1]
        return (int(out.sequences[0, n]), out.sequences.shape[1] - n,
                lambda: set(handle.stats.stages[0].kept_indices[0][0]))
    run.model = m  # type: ignore[attr-defined]
    return run


# ---------------------------------------------------------------------------------------------------- AngelSlim
def angelslim_compat(notes: list[str]) -> None:
    """AngelSlim's Prunable_LlamaModel calls ``create_causal_mask(input_embeds=..., cache_position=...)`` (an
    earlier transformers 5.x signature); 5.16-5.19 take ``inputs_embeds`` and no ``cache_position``: renamed at the
    call, in AngelSlim's module namespace only."""
    import angelslim.compressor.token_compressor.models.llava as asl

    ccm = asl.create_causal_mask
    if "input_embeds" in inspect.signature(ccm).parameters:
        return

    def create_causal_mask(*, input_embeds: torch.Tensor, cache_position: Any = None, **kw: Any) -> Any:
        return ccm(inputs_embeds=input_embeds, **kw)
    asl.create_causal_mask = create_causal_mask
    notes.append("AngelSlim: create_causal_mask(input_embeds=, cache_position=) renamed to the installed "
                 "transformers signature (inputs_embeds=, no cache_position) in its models.llava namespace")


def angelslim_mapping(model: Any) -> list[dict[str, str]]:
    """The ``model_mapping`` of AngelSlim's configs/llava/pruning/*.yaml (not shipped in the wheel), with the CLIP
    path of the installed transformers (CLIPVisionModel lost its ``vision_model`` level in 5.x)."""
    vt = "model.vision_tower" + (".vision_model" if hasattr(model.model.vision_tower, "vision_model") else "")
    w = {"wrapper_module": ".models.llava"}
    return [{"name": "vl_model", "path": "model", "wrapper_class": "Prunable_LlavaModel", **w},
            {"name": "vision_attn", "path": f"{vt}.encoder.layers[n].self_attn",
             "wrapper_class": "Prunable_CLIPAttention", **w},
            {"name": "text_model", "path": "model.language_model", "wrapper_class": "Prunable_LlamaModel", **w},
            {"name": "llm_attn", "path": "model.language_model.layers[n].self_attn",
             "wrapper_class": "Prunable_LlamaAttention", **w}]


def angelslim(model: Any, strategy: str, keep: int, max_new: int, llm_layer: int) -> Run:
    from angelslim.compressor.token_compressor.adapter import UniversalPruningAdapter
    from angelslim.compressor.token_compressor.base.config import (DataRequirements, StrategyConfig,
                                                                    TokenCompressorConfig)

    ratio = 1.0 - keep / 576  # AngelSlim keeps round(576 * (1 - ratio)) visual tokens
    vit = model.config.vision_feature_layer
    if strategy == "divprune":
        req, stage = DataRequirements(inputs_embeds=True), {"global": StrategyConfig("divprune", {"ratio": ratio})}
    elif strategy == "visionzip":  # our visionzip: keep - 10 dominant + 10 contextual, [CLS] attention at that layer
        req = DataRequirements(vit_q_layers=[vit], vit_k_layers=[vit], feature_map=True, image_grid_thw=True)
        stage = {"global": StrategyConfig("visionzip", {"ratio": ratio, "zip_ratio": 10 / keep, "layer_idx": vit})}
    else:  # FastV-like: layer `llm_layer`'s last-text-token attention, softmax over the visual keys, prune after it
        req = DataRequirements(llm_q_layers=[llm_layer], llm_k_layers=[llm_layer])
        stage = {llm_layer: StrategyConfig("special_token_based_attention", {
            "ratio": ratio, "query_source": {"strategy": "last_text"}, "layer_idx": llm_layer})}
    key = next(iter(stage))
    m = copy.deepcopy(model)
    # transformers >=5.18 generate() runs the vision tower itself and passes `mm_encoder_outputs`, which AngelSlim's
    # Prunable_LlavaModel ignores (it needs pixel_values, and its CLIP hooks need its PruningContext): turn that off.
    peer_path(m)
    with contextlib.redirect_stdout(io.StringIO()):
        UniversalPruningAdapter(m, TokenCompressorConfig(req, stage), angelslim_mapping(m)).wrap_model()

    def run(x: Ex) -> tuple[int, int, Kept]:
        out = _generate(m, x, max_new)
        n = x.inputs["input_ids"].shape[1]
        mask = out.past_key_values.pruning_info[key]["mask"]  # PruningCache: keep mask over the prompt
        return int(out.sequences[0, n]), out.sequences.shape[1] - n, lambda: _local(torch.nonzero(mask).flatten(), x)
    run.model = m  # type: ignore[attr-defined]
    return run


# ---------------------------------------------------------------------------------------------------- SparseVLM
def sparsevlm_kv(model: Any, processor: Any, keep: int, max_new: int, layer: int, notes: list[str]) -> Run:
    """``sparsevlm_generate``: dense prefill with attention weights, top-``keep`` of the first ``n_vis`` positions by
    text->visual attention summed over the text rows at ``target_layer``, KV cache pruned, greedy decode. It
    assumes the visual tokens open the sequence (Qwen2.5-VL); here n_vis spans the LLaVA prompt up to the last
    image token, so the 2-token "USER :" prefix competes with them. Needs eager attention and ``rope_deltas``."""
    import sparsevlm.generate as sg

    m = copy.deepcopy(model)
    m.set_attn_implementation("eager")  # its docstring: "loaded with attn_implementation='eager'"
    m.model.rope_deltas = torch.zeros((), dtype=torch.long)  # Qwen-only attribute it shifts; LLaVA ignores it
    if not getattr(sg._prune_kv_cache, "_recorder", False):  # observe the kept indices it prunes the cache to
        orig = sg._prune_kv_cache

        def record(cache: Any, kept: torch.Tensor) -> Any:
            record.last = kept  # type: ignore[attr-defined]
            return orig(cache, kept)
        record._recorder = True  # type: ignore[attr-defined]
        sg._prune_kv_cache = record
        notes.append("SparseVLM: sparsevlm_generate on LLaVA with eager attention, model.model.rope_deltas=0 "
                     "(absent on LlavaModel), n_vis = prompt up to the last image token (prefix 'USER :' included), "
                     f"target_layer={layer}; kept indices read by wrapping sparsevlm.generate._prune_kv_cache")

    def run(x: Ex) -> tuple[int, int, Kept]:
        out = sg.sparsevlm_generate(m, processor, x.inputs, n_vis=x.img_end, keep_n_vis=keep, max_new_tokens=max_new,
                                    target_layer=layer, device="cpu")
        kept = sg._prune_kv_cache.last  # type: ignore[attr-defined]
        return int(out[0, 1]), out.shape[1] - 1, lambda: _local(kept, x)  # out[0, 0]: the re-fed last prompt token
    return run


def sparsevlm_hook_probe(model: Any, x: Ex) -> dict[str, Any]:
    """``apply_sparsevlm`` (the paper's adaptive rater/rank/recycling path) on one question: does it prune?"""
    import sparsevlm

    m = copy.deepcopy(model)
    m.set_attn_implementation("eager")
    with contextlib.redirect_stdout(io.StringIO()):
        state = sparsevlm.apply_sparsevlm(m, n_vis=x.img_end, min_keep=32)
        a = m(**x.inputs).logits[0, -1]
        sparsevlm.remove_hooks(state)
    b = model(**x.inputs).logits[0, -1]
    return {"n_vis_after": state["n_vis"], "n_vis_before": x.img_end, "pruned": state["n_vis"] != x.img_end,
            "max_logit_diff_vs_dense": float((a - b).abs().max()),
            "why": "transformers 5.x decoder layers return a tensor, not (hidden, attn_weights): its post-hook "
                   "finds no attention weights and returns the output unchanged"}


# ---------------------------------------------------------------------------------------------------- harness
def build(model: Any, processor: Any, keeps: list[int], max_new: int, notes: list[str],
          path: str = "peer") -> list[Method]:
    from tokenprune.api import resolve_config

    angelslim_compat(notes)
    layers = model.config.text_config.num_hidden_layers
    ms = [Method("dense", "-", None, dense(model, max_new, path))]
    for k in keeps:
        at = resolve_config("fastv-vk", num_layers=layers, keep=k).stages[0].at
        score_layer = int(at) - 1  # our stage at layer L scores with layer L-1's attention and prunes before L
        def o(preset: str) -> Method:
            return Method(f"{preset}@{k}", "tokenprune", k, ours(model, preset, k, max_new, path))

        def a(strategy: str, vs: str, layer: int = 0) -> Method:
            return Method(f"AS-{strategy}@{k}", "AngelSlim", k, angelslim(model, strategy, k, max_new, layer),
                          [f"{vs}@{k}"])
        sv = sparsevlm_kv(model, processor, k, max_new, score_layer, notes)
        ms += [o("divprune"), a("divprune", "divprune"), o("visionzip"), a("visionzip", "visionzip"),
               o("fastv-vk"), a("fastv", "fastv-vk", score_layer), o("agile"), o("fastv"),
               Method(f"SparseVLM-kv@{k}", "SparseVLM", k, sv, [f"agile@{k}", f"fastv@{k}"])]
    return ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=200, help="first N test questions")
    p.add_argument("--keep", default="144,64", help="kept visual tokens per image, comma-separated")
    p.add_argument("--max-new-tokens", type=int, default=4, help="greedy tokens per call (the same for all)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds of every method on the first question")
    p.add_argument("--out", default="evals/peers_cpu.json")
    p.add_argument("--markdown", action="store_true", help="print a markdown table instead of a rich one")
    p.add_argument("--batch", type=int, default=16, help="then time left-padded batches of this many questions "
                   "(every method with a batched generate(); 0: skip)")
    p.add_argument("--path", choices=["peer", "default"], default="peer",
                   help="generate() path of dense and tokenprune: 'peer' = AngelSlim's (vision tower inside the first "
                   "forward, no mm_encoder_outputs), 'default' = transformers' own")
    p.add_argument("--only", default="", help="comma-separated substrings: run only the methods whose label "
                   "contains one (dense always runs), e.g. 'visionzip' for a quick A/B")
    a = p.parse_args()
    require_peers()
    from tqdm import tqdm

    from tokenprune.results import write_json
    from tokenprune.shapesvqa import model as M
    from tokenprune.shapesvqa.data import examples

    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    model, processor = M.load("embedded")
    exs = []
    raw = list(examples("test", a.limit))
    for e in raw:
        inputs = processor(images=[e.image()], text=[M.prompt(processor, e.qa.question)], return_tensors="pt")
        img = torch.nonzero(inputs["input_ids"][0] == model.config.image_token_id).flatten()
        exs.append(Ex(dict(inputs), e.qa.answer, int(img[0]), int(img[-1]) + 1))
    notes: list[str] = ["transformers >=5.18: AngelSlim copies get _supports_mm_encoder_outputs() -> False, so "
                        "generate() hands pixel_values to its Prunable_LlavaModel (it ignores mm_encoder_outputs)"]
    if a.path == "peer":
        notes.append("--path peer: dense and tokenprune run generate() on AngelSlim's path too (no "
                     "mm_encoder_outputs): the timings compare the pruning methods, not two paths through generate()")
    methods = build(model, processor, [int(k) for k in a.keep.split(",")], a.max_new_tokens, notes, a.path)
    if a.only:
        want = [w for w in a.only.split(",") if w]
        methods = [m for m in methods if m.label == "dense" or any(w in m.label for w in want)]
        if len(methods) == 1:
            sys.exit(f"evals/peers.py: --only {a.only!r} matches no method")
    probe = sparsevlm_hook_probe(model, exs[0])
    vocab = processor.tokenizer
    for _ in range(a.warmup):
        for m in methods:
            with contextlib.redirect_stdout(io.StringIO()):
                m.run(exs[0])
    # as timeit does: no garbage collection inside a timed call (before this, single calls of any method took
    # 50-200 ms longer now and then, in the same place on a rerun); the setup's objects are frozen, and each
    # question's garbage is collected after its calls, off the clock
    gc.collect()
    gc.freeze()
    gc.disable()
    for i, x in enumerate(tqdm(exs, desc="questions")):
        for j in range(len(methods)):  # interleaved, start rotated per question: drift and order hit all alike
            m = methods[(i + j) % len(methods)]
            with contextlib.redirect_stdout(io.StringIO()):  # AngelSlim prints shapes on every prefill
                t = time.perf_counter()
                tok, new, kept = m.run(x)
                m.ms.append((time.perf_counter() - t) * 1e3)
            kept = kept() if kept is not None else None  # read after the clock: not part of the method's cost
            m.hits.append(int(vocab.convert_ids_to_tokens(tok) == x.answer))
            m.new_tokens.append(new)
            m.kept.append(kept)
        gc.collect()
    gc.enable()
    gc.unfreeze()
    rows = summarize(methods)
    if a.batch > 1:
        from evals.peers_batch import attach, batch_phase, print_batch_vs_single

        batched = batch_phase(methods, processor, raw, a.batch, a.max_new_tokens,
                              lambda xs: tqdm(xs, desc=f"batches of {a.batch}"))
        attach(rows, batched, a.batch)
    versions = {d: md.version(d) for d in ["tokenprune", "torch", "transformers", "angelslim-fork", "sparsevlm"]}
    write_json(a.out, {"limit": a.limit, "split": "test", "batch": 1, "batched": a.batch, "threads": a.threads,
                       "path": a.path,
                       "max_new_tokens": a.max_new_tokens, "versions": versions, "notes": notes,
                       "sparsevlm_hook_api": probe, "rows": rows})
    render(rows, a.markdown)
    if a.batch > 1:
        print_batch_vs_single(rows)
        for r in rows:
            if "error" in r.get("batch", {}) or "unsupported" in r.get("batch", {}):
                print(f"{r['method']} at batch {a.batch}: {r['batch'].get('error') or r['batch']['unsupported']}")
    for r in rows:
        for v, t in r.get("time_vs", {}).items():
            print(f"{r['method']} − {v}, paired per question: median {t['median']:+.2f} ms, mean {t['mean']:+.2f} ms "
                  f"(95% CI {t['ci95'][0]:+.2f} … {t['ci95'][1]:+.2f}; > 0: tokenprune faster)")
    print(f"SparseVLM apply_sparsevlm (hook API): pruned={probe['pruned']} "
          f"(n_vis {probe['n_vis_before']} -> {probe['n_vis_after']}); results in {a.out}")


if __name__ == "__main__":
    main()
