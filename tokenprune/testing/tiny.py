"""Tiny random-weight VLMs of every supported family, built from configs, and matching inputs.

Used by the tests, the demo's fallback model and the benchmark's ``small`` geometry. Inputs are built without a
processor: placeholder counts come from the model's own feature functions, so they always match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..adapters import ADAPTERS
from ..adapters import family as family_entry

#: every family of the adapter table
FAMILIES = tuple(ADAPTERS)
VOCAB = 160
PAD, BOS = 0, 1
IMAGE, VIDEO, VSTART, VEND = 150, 151, 152, 153


def text_kwargs(layers: int, hidden: int, heads: int, kv: int, inter: int, **extra: Any) -> dict:
    """Keyword arguments of a small decoder text config with the ids the tiny models use."""
    return dict(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=4096,
                pad_token_id=PAD, bos_token_id=BOS, eos_token_id=2, **extra)


def make_config(family: str, layers: int = 4, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
                inter: int = 128) -> Any:
    """A tiny config of ``family`` (head_dim = hidden / heads), from the family table."""
    ids = {"image": IMAGE, "video": VIDEO, "vstart": VSTART, "vend": VEND, "pad": PAD}
    return family_entry(family).tiny_config(text_kwargs(layers, hidden, heads, kv_heads, inter), ids)


def make_model(family: str, attn: str = "sdpa", seed: int = 0, dtype: torch.dtype = torch.float32,
               **geometry: Any) -> torch.nn.Module:
    """A tiny random-weight ``*ForConditionalGeneration`` in eval mode."""
    import transformers as tf

    cls = getattr(tf, family_entry(family).hf_class)
    cfg = make_config(family, **geometry)
    cfg._attn_implementation = attn
    torch.manual_seed(seed)
    model = cls(cfg).to(dtype).eval()
    model.generation_config.pad_token_id = PAD
    return model


@dataclass
class Item:
    """One image or video of a prompt."""

    size: tuple[int, int] = (56, 56)  # (h, w) pixels (Qwen: multiple of 28)
    video: bool = False
    frames: int = 2  # a Qwen video's temporal patches (2 frames each); LLaVA-OneVision: frames


def _pixels(family: str, model: Any, items: list[Item], gen: torch.Generator) -> dict[str, Any]:
    """Pixel inputs and the per-item placeholder count computed by the model itself."""
    out: dict[str, Any] = {}
    if family.startswith("qwen"):
        for kind in ("image", "video"):
            its = [i for i in items if i.video == (kind == "video")]
            if not its:
                continue
            grid = torch.tensor([[i.frames if kind == "video" else 1, i.size[0] // 14, i.size[1] // 14] for i in its])
            patches = int(grid.prod(-1).sum())
            pv = torch.rand(patches, 3 * 2 * 14 * 14, generator=gen)
            key = "pixel_values" if kind == "image" else "pixel_values_videos"
            out[key] = pv
            out[f"{kind}_grid_thw"] = grid
        return out
    videos = [i for i in items if i.video]
    if videos and family != "llava_onevision":
        raise ValueError("tiny video inputs are built for the Qwen families and LLaVA-OneVision only")
    if videos:
        if len({i.frames for i in videos}) > 1:
            raise ValueError("LLaVA-OneVision takes one frame count per batch (its pixel_values_videos is one tensor)")
        crop = model.config.vision_config.image_size
        out["pixel_values_videos"] = torch.rand(len(videos), videos[0].frames, 3, crop, crop, generator=gen)
        items = [i for i in items if not i.video]
        if not items:
            return out
    if family == "llava":
        out["pixel_values"] = torch.rand(len(items), 3, 56, 56, generator=gen)
        return out
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    cfg = model.config
    crop = cfg.vision_config.image_size
    n = [image_size_to_num_patches(list(i.size), cfg.image_grid_pinpoints, crop) for i in items]
    pv = torch.zeros(len(items), max(n), 3, crop, crop)
    for j, k in enumerate(n):
        pv[j, :k] = torch.rand(k, 3, crop, crop, generator=gen)
    out["pixel_values"] = pv
    out["image_sizes"] = torch.tensor([list(i.size) for i in items])
    return out


def item_counts(family: str, model: Any, pixels: dict[str, Any]) -> dict[str, list[int]]:
    """Placeholder tokens per item, from the model's own feature functions."""
    from ..adapters import get_adapter

    ad = get_adapter(model)
    with torch.no_grad():
        out = {}
        if "pixel_values" in pixels:
            kw = {k: pixels[k] for k in ("image_sizes", "image_grid_thw") if k in pixels}
            out["image"] = ad.feature_counts(ad.vlm.get_image_features(pixels["pixel_values"], **kw))
        if "pixel_values_videos" in pixels:
            kw = {"video_grid_thw": pixels["video_grid_thw"]} if "video_grid_thw" in pixels else {}
            out["video"] = ad.feature_counts(ad.vlm.get_video_features(pixels["pixel_values_videos"], **kw))
    return out


def make_inputs(family: str, model: Any, prompts: list[list[Item]], text_len: tuple[int, int] = (5, 7),
                padding: str = "left", seed: int = 0) -> dict[str, torch.Tensor]:
    """A padded batch: each prompt is ``BOS, text, [vision_start] placeholders [vision_end], text`` per item (a
    Qwen3-VL video: ``timestamp, vision_start, placeholders, vision_end`` per temporal patch)."""
    gen = torch.Generator().manual_seed(seed)
    flat = [it for p in prompts for it in p]
    pixels = _pixels(family, model, flat, gen) if flat else {}
    counts = item_counts(family, model, pixels) if flat else {}
    it_img, it_vid = iter(counts.get("image", [])), iter(counts.get("video", []))
    qwen = family.startswith("qwen")
    rows, types = [], []
    for r, items in enumerate(prompts):
        ids = [BOS] + torch.randint(3, 140, (text_len[0] + r,), generator=gen).tolist()
        tt = [0] * len(ids)
        for it in items:
            k = next(it_vid) if it.video else next(it_img)
            tok = VIDEO if it.video else IMAGE
            pre, post = ([VSTART], [VEND]) if qwen else ([], [])
            # Qwen3-VL: a video is one group per temporal patch, each after a timestamp token (as its processor)
            groups = it.frames if it.video and family == "qwen3_vl" else 1
            for g in range(groups):
                stamp = [140 + g] if groups > 1 else []
                ids += stamp + pre + [tok] * (k // groups) + post
                tt += [0] * (len(stamp) + len(pre)) + [2 if it.video else 1] * (k // groups) + [0] * len(post)
            ids += torch.randint(3, 140, (2,), generator=gen).tolist()
            tt += [0] * 2
        ids += torch.randint(3, 140, (text_len[1],), generator=gen).tolist()
        tt += [0] * text_len[1]
        rows.append(ids)
        types.append(tt)
    n = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), n), PAD, dtype=torch.long)
    mask = torch.zeros(len(rows), n, dtype=torch.long)
    mm = torch.zeros(len(rows), n, dtype=torch.long)
    for i, (ids, tt) in enumerate(zip(rows, types)):
        sl = slice(n - len(ids), n) if padding == "left" else slice(0, len(ids))
        input_ids[i, sl], mask[i, sl], mm[i, sl] = torch.tensor(ids), 1, torch.tensor(tt)
    out = {"input_ids": input_ids, "attention_mask": mask, **pixels}
    if qwen:
        out["mm_token_type_ids"] = mm
    return out


CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() }} : {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT :{% endif %}"
)


#: the Qwen-VL vision tokens, at ids 150..153 of the tiny configs
QWEN_VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def make_word_tokenizer(words: list[str], specials: tuple[str, ...] = ("<image>",)) -> Any:
    """An offline word-level fast tokenizer whose ids match the tiny models: ``USER``, ``ASSISTANT``, ``:`` and
    ``words`` from id 4, unused fillers, then ``specials`` from id 150 (LLaVA's ``<image>``; or
    :data:`QWEN_VISION_TOKENS`)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": 2, "<unk>": 3}
    for w in ["USER", "ASSISTANT", ":"] + list(words):
        vocab.setdefault(w, len(vocab))
    if len(vocab) > IMAGE:
        raise ValueError(f"at most {IMAGE - 7} words fit below the placeholder ids")
    while len(vocab) < IMAGE:
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    for t in specials:
        vocab[t] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.add_special_tokens({"additional_special_tokens": list(specials)})
    return fast


def make_qwen_processor(words: list[str], family: str = "qwen2_vl", max_pixels: int = 112 * 112) -> Any:
    """An offline ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` for the tiny Qwen configs (patch 14, 2×2 merge,
    temporal patch 2). Needs torchvision for the video processor (the vLLM environment has it)."""
    import warnings

    import transformers as tf

    kw = dict(min_pixels=56 * 56, max_pixels=max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ip, vp = tf.Qwen2VLImageProcessor(**kw), tf.Qwen2VLVideoProcessor(**kw)
    cls = tf.Qwen2_5_VLProcessor if family == "qwen2_5_vl" else tf.Qwen2VLProcessor
    return cls(image_processor=ip, tokenizer=make_word_tokenizer(words, QWEN_VISION_TOKENS), video_processor=vp)


def make_llava_processor(words: list[str] = ("describe", "the", "image", ".")) -> Any:
    """An offline ``LlavaProcessor`` for the tiny LLaVA (56-px CLIP tower, 16 tokens per image)."""
    import warnings

    from transformers import CLIPImageProcessor, LlavaProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ip = CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    return LlavaProcessor(image_processor=ip, tokenizer=make_word_tokenizer(list(words)), patch_size=14,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)
