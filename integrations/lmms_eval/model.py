"""``--model tokenprune``: any family of tokenprune's table under any pruning config, batched, in lmms-eval 0.7.

    python -m lmms_eval --model tokenprune --model_args pretrained=embedded,preset=fastv,keep=64,layer=2 \\
        --tasks shapesvqa --include_path DIR --batch_size 4

``generate_until`` runs batches with left padding (answers at batch 4 equal batch 1: pruning is per row);
``loglikelihood`` scores continuations (multiple-choice tasks). Each answered sample gets a line of tokenprune's
statistics (visual tokens in / kept per stage, LM FLOPs ratio, prefill time) in ``stats_path`` (JSONL, keyed by task
and ``doc_id``): lmms-eval's sample logs have no field for it.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

import torch
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from tqdm import tqdm

import tokenprune as tp

from ...adapters import family
from ...errors import InputError
from .args import ALLOWED, ModelArgs
from .media import Media, collect, encode, flatten, prompt


class TokenpruneLMM(lmms):
    """A Hugging Face VLM with tokenprune attached (dense when no preset/config is given)."""

    is_simple = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.args = a = ModelArgs.parse(kwargs)
        import transformers
        from transformers import AutoConfig, AutoProcessor

        path = a.pretrained
        if path in ("embedded", "embedded-qwen"):
            from ...shapesvqa.model import EMBEDDED_DIR
            from ...shapesvqa.qwen import EMBEDDED_QWEN_DIR

            path = str(EMBEDDED_DIR if path == "embedded" else EMBEDDED_QWEN_DIR)
        hf_config = AutoConfig.from_pretrained(path)
        # UnsupportedModelError before any weights load
        self.family = fam = family(getattr(hf_config, "model_type", None))
        num_layers = hf_config.get_text_config().num_hidden_layers
        self.prune_config = a.prune_config(num_layers)
        if self.prune_config is not None:
            self.prune_config.validate_for(num_layers)
        dtype = a.dtype if a.dtype == "auto" else getattr(torch, a.dtype)
        load: dict[str, Any] = {"dtype": dtype}
        if a.attn_implementation:
            load["attn_implementation"] = a.attn_implementation
        if a.device_map:
            load["device_map"] = a.device_map
        self._model = getattr(transformers, fam.hf_class).from_pretrained(path, **load).eval()
        if not a.device_map:
            self._model.to(a.device)
        self.processor = AutoProcessor.from_pretrained(path)
        self.processor.tokenizer.padding_side = "left"
        self.handle = tp.apply(self._model, self.prune_config) if self.prune_config is not None else None
        self._prefill_ms: list[float] = []
        self._timer_on_lm()
        from accelerate import PartialState

        state = PartialState()
        self._rank, self._world_size = state.process_index, state.num_processes
        self.sample_stats: list[dict[str, Any]] = []

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "TokenpruneLMM":
        """lmms-eval always passes its own ``--batch_size``/``--device``; a value in ``--model_args`` wins."""
        from lmms_eval import utils

        args = utils.simple_parse_args_string(arg_string)
        extra = {k: v for k, v in (additional_config or {}).items()
                 if v is not None and k in ALLOWED and k not in args}
        return cls(**args, **extra)

    # -- lmms-eval's interface --------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        return self._model

    @property
    def batch_size(self) -> int:
        return self.args.batch_size

    @property
    def device(self) -> torch.device:
        return next(self._model.parameters()).device

    def generate_until(self, requests: list[Instance]) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=self._rank != 0, desc="tokenprune")
        for chunk in self._batches(requests):
            args = [requests[i].args for i in chunk]
            texts = self._answer([x[0] for x in args], [self._visuals(x) for x in args], args[0][1], args)
            for i, text in zip(chunk, texts):
                out[i] = text
            bar.update(len(chunk))
        bar.close()
        return out  # type: ignore[return-value]

    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        """lmms-eval's multi-round protocol for simple models: round 0 answers the request's context; then the
        task's ``doc_to_text(doc, previous_output=..., round_idx=r, previous_round_info=...)`` returns ``(visuals,
        context, terminal, _, info)`` for round r until ``terminal``. Each round is a new prompt (the task puts any
        history it wants into the context); rows of a batch stop independently. Returns each request's answers."""
        out: list[list[str]] = [[] for _ in requests]
        bar = tqdm(total=len(requests), disable=self._rank != 0, desc="tokenprune multi-round")
        for chunk in self._batches(requests):
            args = [requests[i].args for i in chunk]
            contexts = [x[0] for x in args]
            visuals = [self._flatten(x[2](self._doc(x[5], x[6], x[4]))) for x in args]  # per row, this round's
            info: list[Any] = [None] * len(chunk)
            live = list(range(len(chunk)))
            round_idx = 0
            while live:
                texts = self._answer([contexts[j] for j in live], [visuals[j] for j in live], args[0][1],
                                     [(None, None, None, args[j][4], args[j][5], args[j][6]) for j in live])
                for j, text in zip(live, texts):
                    out[chunk[j]].append(text)
                round_idx += 1
                still = []
                for j in live:
                    x = args[j]
                    nxt = x[3](self._doc(x[5], x[6], x[4]), previous_output=list(out[chunk[j]]), round_idx=round_idx,
                               previous_round_info=info[j])
                    if not (isinstance(nxt, tuple) and len(nxt) == 5):
                        raise InputError(f"task {x[5]!r}: doc_to_text for round {round_idx} must return (visuals, "
                                         f"context, terminal, previous_output, info); got {type(nxt).__name__}")
                    v, ctx, terminal, _, info[j] = nxt
                    if not terminal:
                        contexts[j] = ctx
                        visuals[j] = self._flatten(v) if v is not None else visuals[j]
                        still.append(j)
                live = still
            bar.update(len(chunk))
        bar.close()
        return out

    def _batches(self, requests: list[Instance]) -> list[list[int]]:
        """Request indices grouped by task and generation settings, in batches of ``batch_size``."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[json.dumps([r.args[-2], r.args[1]], sort_keys=True, default=str)].append(i)
        return [idxs[a:a + self.batch_size] for idxs in groups.values() for a in range(0, len(idxs), self.batch_size)]

    def _answer(self, contexts: list[str], visuals: list[Media], gen_kwargs: dict[str, Any],
                args: list[tuple]) -> list[str]:
        """One batched generate() over prompts built from ``contexts`` and their visuals; records the stats."""
        inputs, counts = self._encode(contexts, visuals)
        gen, until = self._gen_kwargs(gen_kwargs)
        self._prefill_ms.clear()
        with torch.no_grad():
            seq = self._model.generate(**inputs, **gen)
        texts = self.processor.tokenizer.batch_decode(seq[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        out = []
        for text in texts:
            for stop in until:
                text = text.split(stop)[0] if stop else text
            out.append(text.strip())
        self._record(args, counts)
        return out

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Per request ``(loss, is_greedy)``: the mean negative log-likelihood of the continuation's tokens after
        the (pruned) prompt — lmms-eval's convention (its built-in HF models return the model's ``loss``, and
        ``multiple_choice`` picks the argmin) — and whether every continuation token is the greedy one. The scoring query of an attention stage is the last continuation token here (the whole sequence is
        one forward), not the end of the question as in ``generate_until``."""
        res: list[tuple[float, bool]] = []
        tok = self.processor.tokenizer
        for r in tqdm(requests, disable=self._rank != 0, desc="tokenprune loglikelihood"):
            context, target, doc_to_visual, doc_id, task, split = r.args
            doc = self._doc(task, split, doc_id)
            cont = target if isinstance(target, str) else target(doc)
            media = self._flatten(doc_to_visual(doc))
            cont_ids = tok(cont if cont.startswith(" ") else " " + cont, add_special_tokens=False)["input_ids"]
            inputs = self._encode_text([prompt(self.processor, context, media)], [media])
            n = inputs["input_ids"].shape[1]
            extra = torch.tensor([cont_ids], device=self.device)
            full = dict(inputs)
            for k, v in inputs.items():  # per-token inputs (ids, mask, Qwen's mm_token_type_ids) grow with the text
                if v.dim() == 2 and v.shape == (1, n):
                    tail = extra if k == "input_ids" else (torch.ones_like(extra) if k == "attention_mask"
                                                           else torch.zeros_like(extra))
                    full[k] = torch.cat([v, tail.to(v.dtype)], 1)
            with torch.no_grad():
                logits = self._model(**full).logits[0, -len(cont_ids) - 1:-1].float()
            logp = torch.log_softmax(logits, -1)
            target_ids = torch.tensor(cont_ids, device=logp.device)
            nll = -float(logp.gather(1, target_ids[:, None]).mean())  # lmms-eval ranks choices by argmin of a loss
            pair = (nll, bool((logp.argmax(-1) == target_ids).all()))
            # lmms-eval 0.7.3's unwrap_generation_output turns a bare (float, bool) into its str(); a
            # GenerationResult's payload passes through unchanged
            res.append(GenerationResult(text=pair, token_counts=None))  # type: ignore[arg-type]
        return res

    # -- helpers ------------------------------------------------------------------------------------------------
    def _doc(self, task: str, split: str, doc_id: int) -> Any:
        return self.task_dict[task][split][doc_id]

    def _flatten(self, visuals: Any) -> Media:
        a = self.args
        return collect(flatten(visuals), self.family.modalities, self.family.hf_class, a.video_frames, a.video_fps,
                       a.max_frames)

    def _visuals(self, args: tuple) -> Media:
        context, _, doc_to_visual, doc_id, task, split = args
        return self._flatten(doc_to_visual(self._doc(task, split, doc_id)))

    def _encode_text(self, prompts: list[str], medias: list[Media]) -> dict[str, torch.Tensor]:
        return encode(self.processor, prompts, medias, self.device, next(self._model.parameters()).dtype)

    def _encode(self, contexts: list[str], medias: list[Media]) -> tuple[dict[str, torch.Tensor], list[Media]]:
        prompts = [prompt(self.processor, c, m) for c, m in zip(contexts, medias)]
        return self._encode_text(prompts, medias), medias

    def _gen_kwargs(self, gen_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        g = dict(gen_kwargs or {})
        until = g.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_new = self.args.max_new_tokens or int(g.pop("max_new_tokens", 128))
        g.pop("max_new_tokens", None)
        temperature = float(g.pop("temperature", 0) or 0)
        out = {"max_new_tokens": max_new, "do_sample": temperature > 0,
               "pad_token_id": self.processor.tokenizer.pad_token_id}
        if temperature > 0:
            out["temperature"] = temperature
            if g.get("top_p") is not None:
                out["top_p"] = float(g["top_p"])
        if g.get("num_beams"):
            out["num_beams"] = int(g["num_beams"])
        return out, until

    def _timer_on_lm(self) -> None:
        lm = self._model.model.language_model
        starts: list[float] = []

        def pre(module: Any, args: Any, kwargs: Any) -> None:
            starts.append(time.perf_counter())

        def post(module: Any, args: Any, kwargs: Any, output: Any) -> None:
            t = starts.pop() if starts else None
            if t is not None and not self._prefill_ms:  # the first LM forward of a generate() call: the prefill
                self._prefill_ms.append((time.perf_counter() - t) * 1e3)

        lm.register_forward_pre_hook(pre, with_kwargs=True)
        lm.register_forward_hook(post, with_kwargs=True)

    def _record(self, args: list[tuple], medias: list[Media]) -> None:
        stats = self.handle.stats if self.handle is not None else None
        for row, x in enumerate(args):
            rec: dict[str, Any] = {"task": x[4], "doc_id": x[3], "rank": self._rank, "images": len(medias[row].images),
                                   "videos": len(medias[row].videos),
                                   "batch_prefill_ms": self._prefill_ms[0] if self._prefill_ms else None,
                                   "batch_size": len(args)}
            if stats is not None:
                rec["stages"] = [{"at": s.at, "visual_in": s.visual_in[row], "kept": s.kept[row]}
                                 for s in stats.stages]
                rec["flops_ratio"] = stats.flops_pruned[row] / max(1, stats.flops_dense[row])
            self.sample_stats.append(rec)
            if self.args.stats_path:
                with open(self.args.stats_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
