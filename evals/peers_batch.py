"""The batched half of ``evals.peers``: every method that exposes a ``generate()`` model runs left-padded batches of
the same questions (interleaved per batch, after one warm-up batch each); ms/sample is the median batch time
divided by the batch size, accuracy the first generated token of each row against the answer. A peer whose model
fails on a batch gets the error instead of numbers; one with no batched entry point gets the reason."""
from __future__ import annotations

import contextlib
import gc
import io
import statistics
import time
from typing import Any

NO_BATCH_API = {"SparseVLM": "sparsevlm_generate takes one sample: a single n_vis (the image span's end), which "
                             "left padding makes differ from row to row"}


def _first_tokens(model: Any, inputs: dict, max_new: int) -> list[int]:
    out = model.generate(**inputs, max_new_tokens=max_new, do_sample=False, return_dict_in_generate=True)
    return out.sequences[:, inputs["input_ids"].shape[1]].tolist()


def batch_phase(methods: list[Any], processor: Any, examples: list[Any], batch: int, max_new: int,
                progress: Any = None) -> dict[str, dict[str, Any]]:
    """Per method label: ``{"ms_per_sample", "accuracy", "questions"}``, or ``{"error"}`` / ``{"unsupported"}``."""
    from tokenprune.shapesvqa.embedded import batch_inputs

    chunks = [examples[i:i + batch] for i in range(0, len(examples) - batch + 1, batch)]
    if not chunks:
        return {}
    inputs = [batch_inputs(processor, c) for c in chunks]
    vocab = processor.tokenizer
    out: dict[str, dict[str, Any]] = {}
    live = []
    for m in methods:
        model = getattr(m.run, "model", None)
        if model is None:
            out[m.label] = {"unsupported": NO_BATCH_API.get(m.side, "no batched entry point")}
            continue
        try:  # warm-up, and does it run at all?
            with contextlib.redirect_stdout(io.StringIO()):
                _first_tokens(model, inputs[0], max_new)
        except Exception as e:  # a peer that cannot batch: report what it raised
            out[m.label] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            continue
        live.append((m, model))
        out[m.label] = {"ms": [], "hits": []}
    gc.collect()
    gc.disable()
    try:
        for i, (x, exs) in enumerate(zip(inputs, progress(chunks) if progress else chunks)):
            for j in range(len(live)):
                m, model = live[(i + j) % len(live)]
                with contextlib.redirect_stdout(io.StringIO()):
                    t = time.perf_counter()
                    toks = _first_tokens(model, x, max_new)
                    out[m.label]["ms"].append((time.perf_counter() - t) * 1e3)
                out[m.label]["hits"] += [int(vocab.convert_ids_to_tokens(tok) == e.qa.answer)
                                         for tok, e in zip(toks, exs)]
            gc.collect()
    finally:
        gc.enable()
    for m, _ in live:
        r = out[m.label]
        r["ms_per_sample"] = statistics.median(r["ms"]) / batch
        r["accuracy"] = statistics.fmean(r["hits"])
        r["questions"] = len(r["hits"])
    return out


def attach(rows: list[dict[str, Any]], batched: dict[str, dict[str, Any]], batch: int) -> None:
    """Adds each row's batched result (``batch``, ``batch_ms_per_sample``, ``batch_accuracy`` or the reason)."""
    for r in rows:
        b = batched.get(r["method"])
        if b is None:
            continue
        r["batch"] = {"size": batch, **{k: v for k, v in b.items() if k not in ("hits", "ms")}}
        if "ms" in b:
            r["batch"]["ms"] = [round(t, 3) for t in b["ms"]]


def describe(row: dict[str, Any]) -> str:
    b = row.get("batch")
    if b is None:
        return "-"
    if "ms_per_sample" in b:
        return f"{b['ms_per_sample']:.1f} ({b['accuracy']:.1%})"
    return "fails" if "error" in b else "no batch API"


def print_batch_vs_single(rows: list[dict[str, Any]]) -> None:
    """Prints each dense/tokenprune row's batched accuracy beside its batch-1 accuracy on the same questions (they
    differ only where left padding tips a near-tie)."""
    for r in rows:
        b = r.get("batch", {})
        if "accuracy" in b and r["side"] in ("tokenprune", "-"):
            n = b["questions"]
            one = statistics.fmean(r["hits"][:n])
            print(f"{r['method']}: batch-1 accuracy on those {n} questions {one:.1%}, batched {b['accuracy']:.1%}")

