"""An independent reference: run the language model on a physically reduced sequence, one sample at a time."""
from __future__ import annotations

import torch
from transformers.masking_utils import create_causal_mask

from tokenprune.adapters import get_adapter


def capture_lm_inputs(model, inputs) -> dict:
    """The kwargs the (unpruned) language model receives for ``inputs``."""
    ad = get_adapter(model)
    seen = {}

    def hook(mod, args, kwargs):
        seen.update(kwargs)

    h = ad.lm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(**inputs)
    finally:
        h.remove()
    return seen


def reference_row_logits(model, lm_kwargs: dict, row: int, keep_steps: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """Logits of sample ``row`` when the tokens entering layer ``K`` are only ``dense positions`` (per step).

    ``keep_steps``: ``[(K, dense_positions_kept), ...]`` with ``K = 0`` for pruning before the LM. Layers run
    one by one on the reduced sequence; positions are the original ones.
    """
    ad = get_adapter(model)
    lm = ad.lm
    emb = lm_kwargs["inputs_embeds"][row]
    n = emb.shape[0]
    mask = lm_kwargs.get("attention_mask")
    valid = mask[row].bool() if mask is not None else torch.ones(n, dtype=torch.bool)
    pos = lm_kwargs.get("position_ids")
    if pos is None:
        pos = ad.default_position_ids(1, n, 0, emb.device)
    pos = pos[..., row:row + 1, :] if pos.dim() == 3 else pos[row:row + 1] if pos.shape[0] > 1 else pos
    vpm = lm_kwargs.get("visual_pos_masks")
    ds = lm_kwargs.get("deepstack_visual_embeds")
    if vpm is not None:
        off = int(vpm[:row].sum())
        ds = [d[off:off + int(vpm[row].sum())] for d in ds]
        vpm = vpm[row]
    cur = valid.nonzero().squeeze(1)  # dense positions currently in the sequence
    steps = dict(keep_steps)
    h = emb[cur][None]
    for i, layer in enumerate(ad.layers):
        if i in steps:
            keep = torch.isin(cur, steps[i])
            cur, h = cur[keep], h[:, keep]
        if i == 0 or i in steps:
            p = pos[..., cur]
            cos_sin = lm.rotary_emb(h, ad.rope_positions(p))
            text_pos = p if p.dim() == 2 else (p[0] if p.shape[0] == 4 else None)
            causal = create_causal_mask(config=ad.text_config, inputs_embeds=h, attention_mask=None,
                                        past_key_values=None, position_ids=None)
        h = layer(h, attention_mask=causal, position_embeddings=cos_sin, position_ids=text_pos)
        if ds is not None and i < len(ds):
            vis_here = vpm[cur]
            rows_here = torch.isin(vpm.nonzero().squeeze(1), cur)
            h = lm._deepstack_process(h, vis_here[None], ds[i][rows_here])
    return model.lm_head(lm.norm(h))[0]
