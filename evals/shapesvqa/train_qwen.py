"""Trains the Qwen2-VL ShapesVQA model from scratch on images (several non-square sizes) and clips (resumable).

    python -m evals.shapesvqa.train_qwen --work runs/qwen --minutes 120 [--resume] [--export DIR]

Steps alternate between an image batch and a clip batch (``--clip-every``). Each image or clip carries ``--turns``
question/answer turns in one sequence, so its visual tokens are paid once for several answers. Besides the answer
loss, a linear head on the merger output (one row per LLM visual token) predicts the colour, shape, grid cell and
"holds an object's centre" of the 28-px region it covers (for clips: on the first frame of its temporal patch) — an
auxiliary loss that grounds the visual tokens quickly; the head is not exported. ``--ground`` adds the LLaVA
recipe's attention grounding: one query head in layers 2 and 3 is taught to attend, from each answer position, to the
evidence tokens of its question (for clips, restricted to the first / last temporal patch when the question says
"at the start" / "at the end").
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tokenprune.shapesvqa import qwen as Q
from tokenprune.shapesvqa.clip_questions import KINDS as CLIP_KINDS, make_clip_qas
from tokenprune.shapesvqa.clips import make_clip, render_clip, clip_patch_labels
from tokenprune.shapesvqa.qwen_processor import video_pixels
from tokenprune.shapesvqa.questions import KINDS as IMAGE_KINDS, make_qas
from tokenprune.shapesvqa.scene import make_scene, patch_labels, render

from .per_type import per_type
from .train import evidence

AUX = {"colour": 7, "shape": 5, "cell": 9, "centre": 2}
AUX_WEIGHT = {"centre": [1.0, 10.0], "shape": [1.0, 4.0, 4.0, 4.0, 4.0], "colour": [1.0] + [4.0] * 6}
GROUNDED = ((2, 0), (3, 0))  # (layer, query head)
START = ("start_colour", "start_shape", "count_start")
END = ("end_colour", "end_shape", "count_end", "count_colour_end")


def safe_evidence(qa, obj: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """:func:`evidence`, uniform over every token when no token holds any evidence (a small shape can miss every
    28-px token centre; 0/0 would make the loss NaN)."""
    if not (obj > 0).any() and (qa.cell is None or not (cell == qa.cell).any()):
        return torch.full(obj.shape, 1.0 / obj.numel())
    return evidence(qa, obj, cell)


def clip_evidence(qa, obj: torch.Tensor, cell: torch.Tensor, group: torch.Tensor, groups: int) -> torch.Tensor:
    """Evidence distribution over a clip's tokens (``obj``/``cell``/``group`` per token, time-restricted)."""
    if qa.type in START or qa.type in END:
        inside = group == (0 if qa.type in START else groups - 1)
        obj, cell = torch.where(inside, obj, 0), torch.where(inside, cell, -1)
    return safe_evidence(qa, obj, cell)


class Batcher:
    """Seeds → model inputs with several question/answer turns per item, answer positions and per-token labels."""

    def __init__(self, processor, turns: int, weights: dict[str, float] | None = None) -> None:
        self.p = processor
        self.weights = weights
        self.vocab = processor.tokenizer.get_vocab()
        self.turns = turns
        self.ids_of = lambda words: [self.vocab[w] for w in words]

    def _focus(self, input_ids: torch.Tensor, pad_token: str, dists: list[list[torch.Tensor]]) -> torch.Tensor:
        """``[n_answers, seq]`` target attention: each answer's evidence placed on its row's visual positions."""
        rows = [d for per_row in dists for d in per_row]
        out = torch.zeros(len(rows), input_ids.shape[1])
        k = 0
        for r, per_row in enumerate(dists):
            pos = (input_ids[r] == self.vocab[pad_token]).nonzero().squeeze(1)
            for d in per_row:
                out[k, pos] = d
                k += 1
        return out

    def _rows(self, n_tokens: list[int], qas: list[list], pad_token: str) -> tuple:
        rows, targets = [], []
        for n, turns in zip(n_tokens, qas):
            ids = self.ids_of(["USER", ":", "<|vision_start|>"]) + [self.vocab[pad_token]] * n
            ids += self.ids_of(["<|vision_end|>"])
            tg = []
            for i, qa in enumerate(turns):
                if i:
                    ids += self.ids_of(["USER", ":"])
                ids += self.ids_of(qa.question.split() + ["ASSISTANT", ":"])
                tg.append((len(ids) - 1, self.vocab[qa.answer]))
                ids.append(self.vocab[qa.answer])
            rows.append(ids)
            targets.append(tg)
        width = max(map(len, rows))
        input_ids = torch.full((len(rows), width), Q.PAD)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
        image_id, video_id = self.vocab["<|image_pad|>"], self.vocab["<|video_pad|>"]
        mm = (input_ids == image_id).long() + 2 * (input_ids == video_id).long()
        pos = torch.tensor([[i, p] for i, tg in enumerate(targets) for p, _ in tg])
        tgt = torch.tensor([t for tg in targets for _, t in tg])
        return input_ids, mask, mm, pos, tgt

    def images(self, seeds: list[int], rng: random.Random) -> dict[str, torch.Tensor]:
        imgs, qas, labels, counts, dists = [], [], {k: [] for k in AUX}, [], []
        for seed in seeds:
            scene = make_scene(seed, *rng.choice(Q.IMAGE_SIZES))
            img, lmap = render(scene)
            imgs.append(img)
            pl = patch_labels(scene, lmap, Q.MERGE)
            for k in AUX:
                labels[k].append(torch.as_tensor(pl[k]))
            counts.append(len(pl["cell"]))
            qas.append(make_qas(scene, self.turns, seed * 31 + 7, weights=self.weights))
            obj, cell = torch.as_tensor(pl["object"]), torch.as_tensor(pl["cell"])
            dists.append([safe_evidence(qa, obj, cell) for qa in qas[-1]])
        px = self.p.image_processor(images=imgs, return_tensors="pt")
        input_ids, mask, mm, pos, tgt = self._rows(counts, qas, "<|image_pad|>")
        return {"pixel_values": px["pixel_values"], "image_grid_thw": px["image_grid_thw"], "input_ids": input_ids,
                "attention_mask": mask, "mm_token_type_ids": mm, "pos": pos, "tgt": tgt,
                "focus": self._focus(input_ids, "<|image_pad|>", dists),
                **{f"aux_{k}": torch.cat(v) for k, v in labels.items()}}

    def clips(self, seeds: list[int], rng: random.Random) -> dict[str, torch.Tensor]:
        pix, grids, qas, labels, counts, dists = [], [], [], {k: [] for k in AUX}, [], []
        ip = self.p.image_processor
        for seed in seeds:
            clip = make_clip(seed)
            frames, lmaps = render_clip(clip)
            p, g = video_pixels(frames, ip.image_mean, ip.image_std)
            pix.append(torch.from_numpy(p))
            grids.append(g)
            objs, cells = [], []
            for t in range(0, clip.frames, 2):
                pl = clip_patch_labels(clip, lmaps[t], t, Q.MERGE)
                for k in AUX:
                    labels[k].append(torch.as_tensor(pl[k]))
                objs.append(torch.as_tensor(pl["object"]))
                cells.append(torch.as_tensor(pl["cell"]))
            counts.append(g[0] * g[1] * g[2] // 4)
            qas.append(make_clip_qas(clip, self.turns, seed * 31 + 7))
            group = torch.arange(len(objs)).repeat_interleave(len(objs[0]))
            dists.append([clip_evidence(qa, torch.cat(objs), torch.cat(cells), group, len(objs)) for qa in qas[-1]])
        input_ids, mask, mm, pos, tgt = self._rows(counts, qas, "<|video_pad|>")
        return {"pixel_values_videos": torch.cat(pix), "video_grid_thw": torch.tensor(grids), "input_ids": input_ids,
                "attention_mask": mask, "mm_token_type_ids": mm, "pos": pos, "tgt": tgt,
                "focus": self._focus(input_ids, "<|video_pad|>", dists),
                **{f"aux_{k}": torch.cat(v) for k, v in labels.items()}}


def _grounding(model, captured: dict, pos: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between ``focus`` and each grounded head's attention from the answer positions over the row's
    visual tokens (q/k recomputed from the captured layer inputs with their rotary embeddings)."""
    from transformers.models.qwen2_vl.modeling_qwen2_vl import rotate_half

    total = 0.0
    for layer_idx, head in GROUNDED:
        h, (cos, sin) = captured[layer_idx]
        attn = model.model.language_model.layers[layer_idx].self_attn
        hd = attn.head_dim
        q = attn.q_proj(h[pos[:, 0], pos[:, 1]])[:, head * hd:(head + 1) * hd]
        c, s_ = cos[pos[:, 0], pos[:, 1]], sin[pos[:, 0], pos[:, 1]]
        q = q * c + rotate_half(q) * s_
        kv = head // attn.num_key_value_groups
        k = attn.k_proj(h)[..., kv * hd:(kv + 1) * hd]
        k = (k * cos + rotate_half(k) * sin)[pos[:, 0]]  # (n_qa, seq, hd)
        logits = (q[:, None] * k).sum(-1).float() * attn.scaling
        visual = captured["visual"][pos[:, 0]]  # each answer's row: its visual tokens
        logp = torch.log_softmax(logits.masked_fill(~visual, float("-inf")), -1)
        total = total - (focus * logp.masked_fill(~visual, 0)).sum(-1).mean()
    return total / len(GROUNDED)


def losses(model, head, batch: dict, aux_weight: float, ground: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    feats, captured = [], {}
    hooks = [model.model.visual.merger.register_forward_hook(lambda m, a, out: feats.append(out))]
    if ground:
        for layer_idx, _ in GROUNDED:
            def grab(m, args, kwargs, i=layer_idx):
                captured[i] = (kwargs.get("hidden_states", args[0] if args else None), kwargs["position_embeddings"])
            hooks.append(model.model.language_model.layers[layer_idx].self_attn.register_forward_pre_hook(
                grab, with_kwargs=True))
    try:
        keys = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw",
                "pixel_values_videos", "video_grid_thw")
        out = model.model(**{k: batch[k] for k in keys if k in batch})
    finally:
        for hk in hooks:
            hk.remove()
    pos = batch["pos"]
    logits = model.lm_head(out.last_hidden_state[pos[:, 0], pos[:, 1]]).float()
    qa = F.cross_entropy(logits, batch["tgt"])
    logs = {"qa": qa.item(), "qa_acc": (logits.argmax(-1) == batch["tgt"]).float().mean().item()}
    total = qa
    if ground:
        captured["visual"] = batch["mm_token_type_ids"] > 0
        g = _grounding(model, captured, pos, batch["focus"])
        logs["ground"] = g.item()
        total = total + ground * g
    if aux_weight:
        a = head(feats[0]).float()
        start = 0
        for k, n in AUX.items():
            weight = a.new_tensor(AUX_WEIGHT[k]) if k in AUX_WEIGHT else None
            loss = F.cross_entropy(a[:, start:start + n], batch[f"aux_{k}"], weight=weight)
            logs[f"aux_{k}"] = loss.item()
            total = total + aux_weight * loss
            start += n
    return total, logs


@torch.no_grad()
def evaluate(model, processor, n: int, batch: int = 16) -> dict[str, float]:
    """Val accuracy: images (sizes cycled), per kind; clips, per kind."""
    model.eval()
    out: dict[str, float] = {}
    for name, split, kinds in (("img", "val", IMAGE_KINDS), ("clip", "clips-val", CLIP_KINDS)):
        acc = per_type(model, processor, split, n, batch)
        out[name] = acc["all"]
        out.update({f"{name}_{k}": acc[k] for k in kinds if k in acc})
    model.train()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="runs/qwen", help="checkpoint and learning curve")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock budget (the schedule follows it)")
    ap.add_argument("--batch", type=int, default=8, help="images per image step (clip steps: half)")
    ap.add_argument("--turns", type=int, default=9)
    ap.add_argument("--clip-every", type=int, default=2, help="every N-th step is a clip step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--aux", type=float, default=0.5)
    ap.add_argument("--ground", type=float, default=1.0, help="weight of the attention-grounding loss")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-n", type=int, default=192)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", default=None, help="start from a saved model folder (e.g. the committed work-in-progress "
                                                 "export; auxiliary head and optimizer start fresh)")
    ap.add_argument("--export", default=None, help="save the model and processor here after each evaluation")
    ap.add_argument("--freeze-lm", type=int, default=0, help="keep the language model fixed for the first N steps "
                    "(after --init from a transplanted LM: the random tower learns to feed it before it moves)")
    ap.add_argument("--qweights", default=None, help="image question curriculum, e.g. 'count_shape=4,more=4': "
                    "types drawn in proportion to these weights within their kind (others 1)")
    ap.add_argument("--snapshots", action="store_true", help="also keep the model's weights after every evaluation "
                    "(snap_<step>.pt in --work; compare them with evals.shapesvqa.per_type --snapshot)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from tqdm import tqdm

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    processor = Q.make_processor()
    model = Q.make_model(seed=args.seed).to(device).train()
    head = torch.nn.Linear(model.config.text_config.hidden_size, sum(AUX.values())).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    step, ckpt = 0, work / "ckpt.pt"
    best = -1.0
    if args.init and not (args.resume and ckpt.is_file()):
        from transformers import Qwen2VLForConditionalGeneration

        model.load_state_dict(Qwen2VLForConditionalGeneration.from_pretrained(args.init).state_dict())
    if args.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        step, best = state["step"], state.get("best", -1.0)
    weights = ({t: float(w) for t, w in (kv.split("=") for kv in args.qweights.split(","))}
               if args.qweights else None)
    from tokenprune.shapesvqa.questions import TEMPLATES

    if weights and set(weights) - set(TEMPLATES):
        ap.error(f"--qweights: unknown question types {sorted(set(weights) - set(TEMPLATES))}; "
                 f"known: {sorted(TEMPLATES)}")
    batcher = Batcher(processor, args.turns, weights)
    rng = random.Random(args.seed * 1_000_003 + step)
    warm = 200 if step == 0 else 50
    start_step, t0 = step, time.time()

    def progress() -> float:
        return min(1.0, (time.time() - t0) / (60 * args.minutes)) if args.minutes else step / args.steps

    def lr_at() -> float:
        w = min(1.0, (step - start_step + 1) / warm)
        return args.lr * w * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress())))

    curve = open(work / "curve.jsonl", "a")
    bar = tqdm(total=args.steps, initial=step, desc="train")
    while step < args.steps and progress() < 1.0:
        clip_step = step % args.clip_every == args.clip_every - 1
        seeds = [rng.randrange(9_000_000) for _ in range(args.batch // 2 if clip_step else args.batch)]
        raw = batcher.clips(seeds, rng) if clip_step else batcher.images(seeds, rng)
        batch = {k: v.to(device) for k, v in raw.items()}
        frozen = step < args.freeze_lm
        for p in model.model.language_model.parameters():
            p.requires_grad_(not frozen)
        for g in opt.param_groups:
            g["lr"] = lr_at()
        with torch.autocast(device, dtype=torch.bfloat16):
            loss, logs = losses(model, head, batch, args.aux, args.ground)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(kind="clip" if clip_step else "img", qa=f"{logs['qa']:.3f}", acc=f"{logs['qa_acc']:.2f}")
        if step % args.eval_every == 0 or progress() >= 1.0 or step == args.steps:
            ev = evaluate(model, processor, args.eval_n)
            score = (ev["img"] + ev["clip"]) / 2
            rec = {"step": step, "minutes": (time.time() - t0) / 60, "lr": lr_at(), **logs,
                   **{f"val_{k}": v for k, v in ev.items()}}
            curve.write(json.dumps(rec) + "\n")
            curve.flush()
            bar.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}))
            if args.export and score > best:
                best = score
                model.eval().save_pretrained(args.export)
                processor.save_pretrained(args.export)
                model.train()
                bar.write(f"exported (val img {ev['img']:.3f}, clip {ev['clip']:.3f}) to {args.export}")
            torch.save({"model": model.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(),
                        "step": step, "best": best}, ckpt)
            if args.snapshots:
                torch.save({"model": model.state_dict(), "step": step}, work / f"snap_{step}.pt")
    bar.close()


if __name__ == "__main__":
    main()
