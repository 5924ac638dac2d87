"""Random-weight model geometries for benchmarking (built from configs, no downloads)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...errors import InputError
from ...testing.tiny import BOS, IMAGE, PAD, VEND, VIDEO, VSTART, text_kwargs


@dataclass(frozen=True)
class Geometry:
    name: str
    family: str
    hidden: int
    heads: int
    kv_heads: int
    inter: int
    layers: int  # default LM depth (configurable)
    note: str


GEOMETRIES = {
    "small": Geometry("small", "llava", 256, 4, 2, 688, 4, "tiny LM; 576 visual tokens from a 2-layer 336/14 CLIP-style tower"),
    "llava15-7b": Geometry("llava15-7b", "llava", 4096, 32, 32, 11008, 32,
                           "LLaVA-1.5-7B LM geometry (Llama 4096/32 heads/MLP 11008); cheap 2-layer 336/14 CLIP-style "
                           "stand-in tower (576 tokens)"),
    "qwen2vl-2b": Geometry("qwen2vl-2b", "qwen2_vl", 1536, 12, 2, 8960, 28,
                           "Qwen2-VL-2B LM geometry (1536/12 heads/2 KV heads/MLP 8960, M-RoPE); cheap 2-block stand-in "
                           "tower, a 672x672 image -> 576 tokens"),
}


def build(name: str, layers: int | None = None, dtype: torch.dtype = torch.float32,
          attn: str = "sdpa", device: str = "cpu") -> tuple[torch.nn.Module, Geometry]:
    """The random-weight model of geometry ``name`` with ``layers`` LM layers (default: the real depth)."""
    import transformers as tf

    if name not in GEOMETRIES:
        raise InputError(f"--geometry: unknown geometry {name!r}; allowed: {', '.join(GEOMETRIES)}")
    g = GEOMETRIES[name]
    n_layers = layers or g.layers
    if n_layers < 1:
        raise InputError(f"--layers: got {n_layers}; allowed: >= 1")
    text = text_kwargs(n_layers, g.hidden, g.heads, g.kv_heads, g.inter)
    torch.manual_seed(0)
    if g.family == "llava":
        clip = tf.CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                   image_size=336, patch_size=14)
        cfg = tf.LlavaConfig(vision_config=clip, text_config=tf.LlamaConfig(**text), image_token_id=IMAGE,
                             pad_token_id=PAD)
        cls = tf.LlavaForConditionalGeneration
    else:
        hd = g.hidden // g.heads
        section = [hd // 2 - 2 * (hd // 8), hd // 8, hd // 8]
        vis = dict(depth=2, embed_dim=64, hidden_size=g.hidden, num_heads=2, mlp_ratio=2, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
        cfg = tf.Qwen2VLConfig(vision_config=vis, text_config=dict(text, rope_parameters={
            "rope_type": "default", "rope_theta": 1e6, "mrope_section": section}),
            image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=VSTART, vision_end_token_id=VEND)
        cls = tf.Qwen2VLForConditionalGeneration
    cfg._attn_implementation = attn
    model = cls(cfg).to(dtype=dtype, device=device).eval()
    model.generation_config.pad_token_id = PAD
    return model, g


def inputs(model: torch.nn.Module, g: Geometry, batch: int, text_tokens: int = 48,
           device: str = "cpu") -> dict[str, Any]:
    """``batch`` prompts of one 576-token image and ``text_tokens`` text tokens each (no padding)."""
    if batch < 1:
        raise InputError(f"--batch: got {batch}; allowed: >= 1")
    gen = torch.Generator().manual_seed(0)
    head = [BOS] + torch.randint(3, 140, (text_tokens // 3,), generator=gen).tolist()
    tail = torch.randint(3, 140, (text_tokens - len(head),), generator=gen).tolist()
    if g.family == "llava":
        ids = head + [IMAGE] * 576 + tail
        pix = {"pixel_values": torch.rand(batch, 3, 336, 336, generator=gen)}
        mm = None
    else:
        ids = head + [VSTART] + [IMAGE] * 576 + [VEND] + tail
        grid = torch.tensor([[1, 48, 48]] * batch)
        pix = {"pixel_values": torch.rand(batch * 48 * 48, 3 * 2 * 14 * 14, generator=gen), "image_grid_thw": grid}
        mm = [0] * (len(head) + 1) + [1] * 576 + [0] * (len(tail) + 1)
    out: dict[str, Any] = {"input_ids": torch.tensor([ids] * batch), "attention_mask": torch.ones(batch, len(ids),
                                                                                                  dtype=torch.long)}
    if mm is not None:
        out["mm_token_type_ids"] = torch.tensor([mm] * batch)
    out.update(pix)
    dtype = next(model.parameters()).dtype
    return {k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in out.items()}
