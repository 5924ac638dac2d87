"""Do kept visual tokens need their original positions? The embedded model answers test questions with a pre-LLM
DivPrune-style selection (norm scores, max-min) twice: through tokenprune (kept tokens keep their original 1-D
positions) and on the same kept tokens physically gathered and renumbered 0..n'-1 — what vLLM's LLaVA would do with a
shortened prompt without the plugin's position bookkeeping (and what VisionZip's and DivPrune's own code do).

    python -m evals.shapesvqa.positions [--keep 64,144] [--n 64]
"""
from __future__ import annotations

import argparse

import torch

import tokenprune as tp
from tokenprune import PruneConfig
from tokenprune.shapesvqa import model as M
from tokenprune.shapesvqa.data import examples


def contiguous_logits(model, x: dict, kept: torch.Tensor) -> torch.Tensor:
    """Last-position logits of one sample whose image keeps only ``kept`` (indices into its tokens), renumbered."""
    ids = x["input_ids"][0]
    emb = model.get_input_embeddings()(x["input_ids"])
    feats = model.get_image_features(pixel_values=x["pixel_values"])
    feats = getattr(feats, "pooler_output", feats)
    feats = (feats[0] if isinstance(feats, (list, tuple)) else feats).reshape(-1, emb.shape[-1])
    pos = (ids == model.config.image_token_id).nonzero().squeeze(1)
    emb[0, pos] = feats.to(emb.dtype)
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[pos] = False
    keep[pos[kept]] = True
    hidden = model.model.language_model(inputs_embeds=emb[:, keep]).last_hidden_state
    return model.lm_head(hidden[:, -1])[0]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--keep", default="64,144")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args(argv)
    model, proc = M.load(args.model)
    vocab = proc.tokenizer.convert_ids_to_tokens(list(range(model.config.text_config.vocab_size)))
    exs = examples("test", args.n)
    out = {}
    for k in map(int, args.keep.split(",")):
        cfg = PruneConfig.from_dict({"stages": [{"at": "pre_llm", "keep": k, "scorer": "norm", "selector": "maxmin"}]})
        orig = contig = 0
        for e in exs:
            x = proc(images=[e.image()], text=[M.prompt(proc, e.qa.question)], return_tensors="pt")
            with tp.pruned(model, cfg) as h, torch.no_grad():
                orig += vocab[int(model(**x).logits[0, -1].argmax())] == e.qa.answer
                kept = torch.tensor(h.stats.stages[0].kept_indices[0][0])
            with torch.no_grad():
                contig += vocab[int(contiguous_logits(model, x, kept).argmax())] == e.qa.answer
        out[k] = {"original_positions": orig / len(exs), "contiguous_positions": contig / len(exs)}
        print(f"keep {k}: original positions {orig / len(exs):.3f}, contiguous positions {contig / len(exs):.3f} "
              f"({len(exs)} test questions)")
    return out


if __name__ == "__main__":
    main()
