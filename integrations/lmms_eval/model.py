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


class TokenpruneLMM(lmms):
    """A Hugging Face VLM with tokenprune attached (dense when no preset/config is given)."""

    is_simple = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.args = a = ModelArgs.parse(kwargs)
        import transformers
        from transformers import AutoConfig, AutoProcessor

        path = a.pretrained
        if path == "embedded":
            from ...shapesvqa.model import EMBEDDED_DIR

            path = str(EMBEDDED_DIR)
        hf_config = AutoConfig.from_pretrained(path)
        fam = family(getattr(hf_config, "model_type", None))  # UnsupportedModelError before any weights load
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
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[json.dumps([r.args[4], r.args[1]], sort_keys=True, default=str)].append(i)
        bar = tqdm(total=len(requests), disable=self._rank != 0, desc="tokenprune")
        for idxs in groups.values():
            for a in range(0, len(idxs), self.batch_size):
                chunk = idxs[a:a + self.batch_size]
                args = [requests[i].args for i in chunk]
                inputs, n_images = self._encode([x[0] for x in args], [self._visuals(x) for x in args])
                gen, until = self._gen_kwargs(args[0][1])
                self._prefill_ms.clear()
                with torch.no_grad():
                    seq = self._model.generate(**inputs, **gen)
                texts = self.processor.tokenizer.batch_decode(seq[:, inputs["input_ids"].shape[1]:],
                                                              skip_special_tokens=True)
                for i, text in zip(chunk, texts):
                    for stop in until:
                        text = text.split(stop)[0] if stop else text
                    out[i] = text.strip()
                self._record(args, n_images)
                bar.update(len(chunk))
        bar.close()
        return out  # type: ignore[return-value]

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Per request ``(loss, is_greedy)``: the mean negative log-likelihood of the continuation's tokens after
        the (pruned) prompt — lmms-eval's convention (its built-in HF models return the model's ``loss``, and
        ``multiple_choice`` picks the argmin) — and whether every continuation token is the greedy one. The scoring query of an attention stage is the last continuation token here (the whole sequence is
        one forward), not the end of the question as in ``generate_until``."""
        res: list[tuple[float, bool]] = []
        tok = self.processor.tokenizer
        for r in tqdm(requests, disable=self._rank != 0, desc="tokenprune loglikelihood"):
            context, target, doc_to_visual, doc_id, task, split = r.args
            doc = self.task_dict[task][split][doc_id]
            cont = target if isinstance(target, str) else target(doc)
            visuals = self._flatten(doc_to_visual(doc))
            prompt = self._prompt(context, len(visuals))
            cont_ids = tok(cont if cont.startswith(" ") else " " + cont, add_special_tokens=False)["input_ids"]
            inputs = self._encode_text([prompt], visuals)
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

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise InputError("tokenprune lmms-eval model: multi-round generation is not supported yet; use "
                         "single-round tasks")

    # -- helpers ------------------------------------------------------------------------------------------------
    @staticmethod
    def _flatten(visuals: Any) -> list[Any]:
        if visuals is None:
            return []
        out = []
        for v in visuals if isinstance(visuals, (list, tuple)) else [visuals]:
            out.extend(v if isinstance(v, (list, tuple)) else [v])
        if any(isinstance(v, str) for v in out):
            raise InputError("visuals: video (file paths) tasks are not supported by the tokenprune lmms-eval model "
                             "yet; use image tasks")
        return out

    def _visuals(self, args: tuple) -> list[Any]:
        context, _, doc_to_visual, doc_id, task, split = args
        return self._flatten(doc_to_visual(self.task_dict[task][split][doc_id]))

    def _prompt(self, context: str, n_images: int) -> str:
        """The family's chat template over one user turn: the images first, then the text (``<image>`` markers in
        the task's text are dropped: the template places the images)."""
        text = context.replace("<image>", "").strip()
        content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
        return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)

    def _encode_text(self, prompts: list[str], images: list[Any]) -> dict[str, torch.Tensor]:
        kw: dict[str, Any] = {"text": prompts, "return_tensors": "pt", "padding": True}
        if images:
            kw["images"] = images
        inputs = dict(self.processor(**kw))
        dtype = next(self._model.parameters()).dtype
        return {k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
                for k, v in inputs.items()}

    def _encode(self, contexts: list[str], visuals: list[list[Any]]) -> tuple[dict[str, torch.Tensor], list[int]]:
        prompts = [self._prompt(c, len(v)) for c, v in zip(contexts, visuals)]
        return self._encode_text(prompts, [im for v in visuals for im in v]), [len(v) for v in visuals]

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

    def _record(self, args: list[tuple], n_images: list[int]) -> None:
        stats = self.handle.stats if self.handle is not None else None
        for row, x in enumerate(args):
            rec: dict[str, Any] = {"task": x[4], "doc_id": x[3], "images": n_images[row],
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
