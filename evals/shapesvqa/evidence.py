"""Which patches does each preset keep? The share of object patches (the evidence in ShapesVQA) among the kept
visual tokens, against their share of the image, and the kept tokens per horizontal third of the image.

    python -m evals.shapesvqa.evidence [--presets fastv,agile,idpruner,random] [--keep 144] [--n 32]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import tokenprune as tp
from tokenprune.apps.quality import preset_config
from tokenprune.shapesvqa import model as M
from tokenprune.shapesvqa.data import examples
from tokenprune.shapesvqa.scene import patch_labels, render


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--presets", default="fastv,debiased-fastv,agile,idpruner,divprune,visionzip,random")
    ap.add_argument("--keep", type=int, default=144)
    ap.add_argument("--n", type=int, default=32)
    args = ap.parse_args(argv)
    model, proc = M.load(args.model)
    proc.tokenizer.padding_side = "left"
    exs = examples("test", args.n)
    side = int(M.VISUAL_TOKENS ** 0.5)
    objects = [patch_labels(e.scene, render(e.scene)[1])["object"].reshape(-1) > 0 for e in exs]
    x = proc(images=[e.image() for e in exs], text=[M.prompt(proc, e.qa.question) for e in exs],
             return_tensors="pt", padding=True)
    base = float(np.mean([o.mean() for o in objects]))
    print(f"object patches: {base:.1%} of each image on average ({args.n} test images, keep {args.keep})")
    out = {"object_share_of_image": base, "rows": []}
    for name in args.presets.split(","):
        cfg = preset_config(name, args.keep, model.config.text_config.num_hidden_layers)
        with tp.pruned(model, cfg) as h, torch.no_grad():
            model(**x)
            kept = [np.array(s[0]) for s in h.stats.stages[-1].kept_indices]
        share = float(np.mean([o[k].mean() for o, k in zip(objects, kept)]))
        thirds = np.mean([np.bincount(k // side * 3 // side, minlength=3) for k in kept], 0)
        out["rows"].append({"preset": name, "object_share": share, "kept_per_third": thirds.tolist()})
        print(f"{name:15} object share of kept {share:6.1%} ({share / base:4.2f}x the image's)   kept per third "
              f"(top/middle/bottom) {' / '.join(f'{t:.0f}' for t in thirds)}")
    return out


if __name__ == "__main__":
    main()
