"""Decode steps: masks and positions consistent with each layer's (pruned) cache."""
from __future__ import annotations


import torch

from ..errors import InputError
from .state import CallState


class Decode:
    """Mixin of :class:`~tokenprune.runtime.engine.Runtime`: what happens in each forward after the prefill."""

    def _decode_step(self, st: CallState, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        emb = kwargs["inputs_embeds"]
        q = emb.shape[1]
        mask = kwargs.get("attention_mask")
        first = st.segments[0]
        if mask is not None:
            if mask.dim() != 2:
                raise InputError("attention_mask: prepared 4-D masks are not supported while pruning")
            if mask.shape[0] != st.batch:
                raise InputError(f"batch size changed from {st.batch} to {mask.shape[0]} during decoding")
        if (mask is not None or q == 1) and first.unpadded and len(st.segments) == 1 and first.via_lm \
                and first.key_bias is None:
            # the one compacted prompt has no padding and no layer needs a mask of its own: the compacted mask is
            # the dense one without its first dense_len - L columns (all ones), a view instead of a concatenation;
            # no mask stays no mask for one new token (several could be read as packed sequences, see _prefill)
            if mask is not None:
                kwargs["attention_mask"] = mask[:, st.dense_len - first.valid.shape[1]:]
            st.dense_seen += q
            return args, kwargs
        if mask is not None:
            tail = mask[:, st.dense_len:].bool()
        else:
            tail = torch.ones(st.batch, st.dense_seen + q - st.dense_len, dtype=torch.bool, device=emb.device)
        st.step_tail, st.step_masks = tail, {}
        st.dense_seen += q
        if first.via_lm:
            kwargs["attention_mask"] = torch.cat([first.valid, tail], dim=1).long()
        return args, kwargs
