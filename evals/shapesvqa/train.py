"""Trains the ShapesVQA model from scratch (resumable; CPU or GPU).

    python -m evals.shapesvqa.train --work runs/shapes --steps 3000 [--resume] [--export tokenprune/assets/shapesvqa]

Each step draws fresh training scenes; every image carries ``--turns`` question/answer turns in one sequence, so the
576-token image is paid once for several answers. Besides the answer loss, a linear head on the projector output
predicts each patch's colour, shape, grid cell and whether it holds an object's centre (an auxiliary loss that
grounds the visual tokens quickly; the head is not part of the exported model).
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

from tokenprune.shapesvqa import model as M
from tokenprune.shapesvqa.data import examples
from tokenprune.shapesvqa.questions import PLURAL, TEMPLATES, make_qas
from tokenprune.shapesvqa.scene import CELLS, COLOURS, SHAPES, make_scene, patch_labels, render

AUX = {"colour": 7, "shape": 5, "cell": 9, "centre": 2}
AUX_WEIGHT = {"centre": [1.0, 20.0], "shape": [1.0, 5.0, 5.0, 5.0, 5.0]}
#: what the answer position must know about its question before the grounded layers: type, cell, colour, shape
QINFO = {"type": len(TEMPLATES), "cell": len(CELLS) + 1, "colour": len(COLOURS) + 1, "shape": len(SHAPES) + 1}
#: (layer, query head) pairs whose attention from the answer position is taught to land on the evidence patches
GROUNDED = ((2, 0), (3, 0))
IMAGE_START = 2  # "USER :" precedes the image in every training row


class Batcher:
    """Turns seeds into (pixel_values, input_ids, answer positions/targets, patch labels)."""

    def __init__(self, processor, turns: int, type_weights: dict[str, float] | None = None) -> None:
        self.ip = processor.image_processor
        self.vocab = processor.tokenizer.get_vocab()
        self.turns = turns
        self.type_weights = type_weights

    def ids(self, words: list[str]) -> list[int]:
        return [self.vocab[w] for w in words]

    def questions(self, scene, seed: int) -> list:
        return make_qas(scene, self.turns, seed * 31 + 7, self.type_weights)

    def __call__(self, seeds: list[int]) -> dict[str, torch.Tensor]:
        images, rows, targets, labels, focus, qinfo = [], [], [], {k: [] for k in AUX}, [], []
        for seed in seeds:
            scene = make_scene(seed)
            img, lmap = render(scene)
            images.append(img)
            pl = patch_labels(scene, lmap)
            for k in AUX:
                labels[k].append(torch.as_tensor(pl[k]))
            obj, cell = torch.as_tensor(pl["object"]), torch.as_tensor(pl["cell"])
            ids, tg = self.ids(["USER", ":"]) + [M.IMAGE] * M.VISUAL_TOKENS, []
            for i, qa in enumerate(self.questions(scene, seed)):
                if i:
                    ids += self.ids(["USER", ":"])
                ids += self.ids(qa.question.split() + ["ASSISTANT", ":"])
                tg.append((len(ids) - 1, self.vocab[qa.answer]))
                focus.append(evidence(qa, obj, cell))
                qinfo.append(question_info(qa))
                ids.append(self.vocab[qa.answer])
            rows.append(ids)
            targets.append(tg)
        n = max(map(len, rows))
        input_ids = torch.full((len(rows), n), M.PAD)
        mask = torch.zeros(len(rows), n, dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
        pos = torch.tensor([[i, p] for i, tg in enumerate(targets) for p, _ in tg])
        tgt = torch.tensor([t for tg in targets for _, t in tg])
        pix = self.ip(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pix, "input_ids": input_ids, "attention_mask": mask, "pos": pos, "tgt": tgt,
                "focus": torch.stack(focus), "qinfo": torch.tensor(qinfo),
                **{f"aux_{k}": torch.stack(v) for k, v in labels.items()}}


def question_info(qa) -> list[int]:
    """Targets of the question-routing probe: template family, named cell, named colour, named shape (0 = none)."""
    words = qa.question.split()
    colour = next((list(COLOURS).index(w) + 1 for w in words if w in COLOURS), 0)
    shape = next((SHAPES.index(s) + 1 for s in SHAPES for w in words if w in (s, PLURAL[s])), 0)
    cell = qa.cell + 1 if qa.cell is not None else 0
    return [list(TEMPLATES).index(qa.type), cell, colour, shape]


def evidence(qa, obj: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """The target attention over the 576 patches for one question: uniform over the evidence patches."""
    if qa.cell is not None:
        m = (cell == qa.cell) & (obj > 0)
        if not m.any():
            m = cell == qa.cell
    else:
        ids = torch.tensor([i + 1 for i in qa.focus]) if qa.focus else obj[obj > 0].unique()
        m = torch.isin(obj, ids)
        if not m.any():
            m = obj > 0
    return m.float() / m.float().sum()


def grounding_loss(model, hidden_states, pos: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between ``focus`` and each grounded head's attention over the image tokens."""
    from transformers.models.llama.modeling_llama import rotate_half

    lm = model.model.language_model
    total = 0.0
    for layer_idx, head in GROUNDED:
        layer = lm.layers[layer_idx]
        attn = layer.self_attn
        hd = attn.head_dim
        h = layer.input_layernorm(hidden_states[layer_idx])
        n = h.shape[1]
        cos, sin = lm.rotary_emb(h, torch.arange(n, device=h.device)[None])
        rot = lambda x, p: x * cos[0, p] + rotate_half(x) * sin[0, p]  # noqa: E731
        q = attn.q_proj(h[pos[:, 0], pos[:, 1]])[:, head * hd:(head + 1) * hd]
        q = rot(q, pos[:, 1])
        kv_head = head // attn.num_key_value_groups
        img = torch.arange(IMAGE_START, IMAGE_START + M.VISUAL_TOKENS, device=h.device)
        k = attn.k_proj(h[:, img])[..., kv_head * hd:(kv_head + 1) * hd]
        k = rot(k, img)[pos[:, 0]]  # (n_qa, 576, hd)
        logits = (q[:, None] * k).sum(-1).float() * attn.scaling
        total = total - (focus * torch.log_softmax(logits, -1)).sum(-1).mean()
    return total / len(GROUNDED)


def losses(model, head, batch, aux_weight: float, ground_weight: float = 0.0,
           qhead: torch.nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    feats = model.model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
    feats = torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats  # (B, 576, D)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    img = batch["input_ids"] == M.IMAGE
    embeds = embeds.masked_scatter(img[..., None], feats.reshape(-1, feats.shape[-1]).to(embeds.dtype))
    out = model.model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                     output_hidden_states=bool(ground_weight) or qhead is not None)
    hidden = out.last_hidden_state
    pos = batch["pos"]
    logits = model.lm_head(hidden[pos[:, 0], pos[:, 1]]).float()
    qa_loss = F.cross_entropy(logits, batch["tgt"])
    logs = {"qa": qa_loss.item(), "qa_acc": (logits.argmax(-1) == batch["tgt"]).float().mean().item()}
    total = qa_loss
    out_logs = {}
    if ground_weight:
        g = grounding_loss(model, out.hidden_states, pos, batch["focus"])
        out_logs["ground"] = g.item()
        total = total + ground_weight * g
    if qhead is not None:  # the answer position entering the first grounded layer must know its question
        q = qhead(out.hidden_states[GROUNDED[0][0]][pos[:, 0], pos[:, 1]]).float()
        start, ql = 0, 0.0
        for j, n in enumerate(QINFO.values()):
            ql = ql + F.cross_entropy(q[:, start:start + n], batch["qinfo"][:, j])
            start += n
        out_logs["route"] = ql.item()
        total = total + ql
    if aux_weight:
        a = head(feats).float()
        start = 0
        for k, n in AUX.items():
            # object patches are a minority: up-weight them so the tower learns shapes, not background
            weight = a.new_tensor(AUX_WEIGHT[k]) if k in AUX_WEIGHT else None
            l = F.cross_entropy(a[..., start:start + n].reshape(-1, n), batch[f"aux_{k}"].reshape(-1), weight=weight)
            logs[f"aux_{k}"] = l.item()
            total = total + aux_weight * l
            start += n
    return total, {**logs, **out_logs}


@torch.no_grad()
def evaluate(model, processor, split: str, n: int, batch: int = 16) -> dict[str, float]:
    model.eval()
    exs = examples(split, n)
    hits: dict[str, list[bool]] = {"localized": [], "global": []}
    for i in range(0, n, batch):
        chunk = exs[i:i + batch]
        preds = M.answer(model, processor, [e.image() for e in chunk], [e.qa.question for e in chunk])
        for e, p in zip(chunk, preds):
            hits[e.qa.kind].append(p == e.qa.answer)
            hits.setdefault(e.qa.type, []).append(p == e.qa.answer)
    model.train()
    allh = hits["localized"] + hits["global"]
    return {"acc": sum(allh) / len(allh), **{k: sum(v) / max(len(v), 1) for k, v in hits.items()}}


def parse_type_weights(text: str | None) -> dict[str, float] | None:
    """``count_shape=3,more=3`` → sampling weights of training question types (others 1)."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key.strip() not in TEMPLATES:
            raise SystemExit(f"--type-weights: unknown question type {key!r}; known: {', '.join(TEMPLATES)}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--type-weights: {item!r} is not type=number") from None
        if out[key.strip()] <= 0:
            raise SystemExit(f"--type-weights: {item!r} must be positive")
    return out


def init_from(model, state: dict[str, torch.Tensor]) -> None:
    """Loads a saved model; vision layers the saved one lacks (a deeper ``--geometry``) start as identity blocks
    (zero output projections), so the grown model computes exactly what the saved one did."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    grown = [k for k in missing if ".vision_tower." in k and ".encoder.layers." in k]
    if unexpected or len(grown) != len(missing):
        raise SystemExit(f"--init: the saved model does not fit this geometry (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    tower = model.model.vision_tower
    layers = getattr(tower, "vision_model", tower).encoder.layers
    for i in sorted({int(k.split(".layers.")[1].split(".")[0]) for k in grown}):
        for lin in (layers[i].self_attn.out_proj, layers[i].mlp.fc2):
            torch.nn.init.zeros_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
    if grown:
        print(f"--init: grew the vision tower by {len(grown) // 16} identity layer(s)")


class Scenes(torch.utils.data.IterableDataset):
    """Endless training batches; each DataLoader worker draws its own seeds (GPU runs: scene rendering in parallel)."""

    def __init__(self, batcher: Batcher, batch: int, seed: int) -> None:
        self.batcher, self.batch, self.seed = batcher, batch, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = random.Random(self.seed * 1_000_003 + (info.id if info else 0))
        while True:  # train scenes live below the val split
            yield self.batcher([rng.randrange(9_000_000) for _ in range(self.batch)])


def batches(batcher: Batcher, batch: int, seed: int, workers: int):
    if not workers:
        yield from Scenes(batcher, batch, seed)
    else:
        yield from torch.utils.data.DataLoader(Scenes(batcher, batch, seed), batch_size=None, num_workers=workers,
                                               prefetch_factor=4, persistent_workers=True)


def parse_geometry(text: str | None) -> dict[str, int]:
    """``vision_hidden=192,vision_layers=4`` → overrides of ``tokenprune.shapesvqa.model.GEOMETRY``."""
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key.strip() not in M.GEOMETRY:
            raise SystemExit(f"--geometry: unknown key {key!r}; known: {', '.join(M.GEOMETRY)}")
        out[key.strip()] = int(value)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="runs/shapesvqa", help="checkpoints and the learning curve go here")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8, help="images per step")
    ap.add_argument("--turns", type=int, default=8, help="question/answer turns per image")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--aux", type=float, default=0.5, help="weight of the per-patch auxiliary loss")
    ap.add_argument("--ground", type=float, default=1.0, help="weight of the attention-grounding loss")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-n", type=int, default=256)
    ap.add_argument("--resume", action="store_true", help="continue from <work>/ckpt.pt")
    ap.add_argument("--init", default=None, help="start from a saved model folder (e.g. tokenprune/assets/shapesvqa; "
                                                 "auxiliary heads and optimizer start fresh)")
    ap.add_argument("--export", default=None, help="save_pretrained the final model (and processor) here")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader processes rendering scenes (GPU runs)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="wall-clock budget: the schedule follows elapsed time and training stops when it is spent")
    ap.add_argument("--geometry", default=None, help="model overrides, e.g. vision_hidden=192,vision_layers=4")
    ap.add_argument("--type-weights", default=None,
                    help="oversample weak training question types, e.g. count_shape=3,more=3 (others 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from tqdm import tqdm

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    processor = M.make_processor()
    model = M.make_model(seed=args.seed, **parse_geometry(args.geometry)).to(device).train()
    head = torch.nn.Linear(model.config.text_config.hidden_size, sum(AUX.values())).to(device)
    qhead = torch.nn.Linear(model.config.text_config.hidden_size, sum(QINFO.values())).to(device)
    params = list(model.parameters()) + list(head.parameters()) + list(qhead.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    step = 0
    resumed_at = None
    ckpt = work / "ckpt.pt"
    if args.init and not (args.resume and ckpt.is_file()):
        from transformers import LlavaForConditionalGeneration

        init_from(model, LlavaForConditionalGeneration.from_pretrained(args.init).state_dict())
    if args.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        step = state["step"]
        if "qhead" in state:
            qhead.load_state_dict(state["qhead"])
            opt.load_state_dict(state["opt"])
            resumed_at = None
        else:  # a checkpoint from before the routing probe: fresh optimizer moments, short re-warm-up
            resumed_at = step
    batcher = Batcher(processor, args.turns, parse_type_weights(args.type_weights))
    warm = max(1, min(200, args.steps // 10))
    t0 = time.time()

    def progress(s: int) -> float:
        return min(1.0, (time.time() - t0) / (60 * args.minutes)) if args.minutes else min(s / args.steps, 1.0)

    sched = lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress(s))))
    curve = open(work / "curve.jsonl", "a")
    bar = tqdm(total=args.steps, initial=step, desc="train")
    stream = batches(batcher, args.batch, args.seed * 7919 + step, args.workers)
    while step < args.steps and progress(step) < 1.0:
        batch = {k: v.to(device, non_blocking=True) for k, v in next(stream).items()}
        rewarm = min(1.0, (step - resumed_at + 1) / 100) if resumed_at is not None else 1.0
        for g in opt.param_groups:
            g["lr"] = args.lr * sched(step) * rewarm
        with torch.autocast(device, dtype=torch.bfloat16):
            loss, logs = losses(model, head, batch, args.aux, args.ground, qhead)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(qa=f"{logs['qa']:.3f}", acc=f"{logs['qa_acc']:.2f}")
        if step % args.eval_every == 0 or step == args.steps or progress(step) >= 1.0:
            ev = evaluate(model, processor, "val", args.eval_n)
            rec = {"step": step, "images": step * args.batch, "minutes": (time.time() - t0) / 60, **logs,
                   **{f"val_{k}": v for k, v in ev.items()}}
            curve.write(json.dumps(rec) + "\n")
            curve.flush()
            bar.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}))
            torch.save({"model": model.state_dict(), "head": head.state_dict(), "qhead": qhead.state_dict(),
                        "opt": opt.state_dict(),
                        "step": step}, ckpt)
    bar.close()
    if args.export:
        model.eval().save_pretrained(args.export)
        processor.save_pretrained(args.export)
        print(f"exported to {args.export}")


if __name__ == "__main__":
    main()
