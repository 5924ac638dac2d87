"""The ShapesVQA model: a LLaVA-1.5-architecture VLM (CLIP-style tower at 336/14 → 576 visual tokens, MLP
projector, small GQA Llama) with an offline word-level tokenizer and processor, and the embedded checkpoint."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ..testing.tiny import BOS, CHAT_TEMPLATE, IMAGE, PAD, make_word_tokenizer, text_kwargs
from .questions import vocabulary

#: The checkpoint shipped with the package (``tokenprune demo`` and ``--model embedded`` load it).
EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "shapesvqa"
VISUAL_TOKENS = 576
GEOMETRY = dict(vision_hidden=128, vision_layers=4, vision_heads=4, hidden=192, layers=4, heads=6, kv_heads=2,
                inter=512)


def make_config(**overrides: Any) -> Any:
    import transformers as tf

    g = {**GEOMETRY, **overrides}
    clip = tf.CLIPVisionConfig(hidden_size=g["vision_hidden"], intermediate_size=2 * g["vision_hidden"],
                               num_hidden_layers=g["vision_layers"], num_attention_heads=g["vision_heads"],
                               image_size=336, patch_size=14)
    # rope_theta 1e6 (as Qwen2): with head_dim 32 and the default 1e4 only ~5 rotary pairs turn slowly enough over the
    # 576 image tokens for content-based lookups (question -> patch) to work; 1e6 leaves ~8.
    text = tf.LlamaConfig(**text_kwargs(g["layers"], g["hidden"], g["heads"], g["kv_heads"], g["inter"]),
                          rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    cfg = tf.LlavaConfig(vision_config=clip, text_config=text, image_token_id=IMAGE, pad_token_id=PAD,
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    cfg._attn_implementation = "sdpa"
    return cfg


def seeded_model(cls: Any, config: Any, seed: int) -> Any:
    """``cls(config)`` initialised under ``seed``, with the word tokenizer's pad/bos/eos in its generation config."""
    torch.manual_seed(seed)
    model = cls(config)
    model.generation_config.pad_token_id = PAD
    model.generation_config.bos_token_id = BOS
    model.generation_config.eos_token_id = 2
    return model


def make_model(seed: int = 0, **overrides: Any) -> Any:
    import transformers as tf

    return seeded_model(tf.LlavaForConditionalGeneration, make_config(**overrides), seed)


def make_processor() -> Any:
    """The offline ``LlavaProcessor``: CLIP normalisation at 336 px, word-level tokenizer, chat template."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ip = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    return LlavaProcessor(image_processor=ip, tokenizer=make_word_tokenizer(vocabulary()), patch_size=14,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)


def prompt(processor: Any, question: str) -> str:
    """The chat prompt for one image and one question, ending where the answer starts."""
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(msgs, add_generation_prompt=True)


def load(model_dir: str | Path = "embedded", dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """Loads a ShapesVQA model and its processor from ``model_dir`` (``"embedded"``: the shipped checkpoint)."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from ..errors import InputError

    path = EMBEDDED_DIR if str(model_dir) == "embedded" else Path(model_dir)
    if not (path / "config.json").is_file():
        hint = " (the embedded checkpoint is missing from this install)" if str(model_dir) == "embedded" else ""
        raise InputError(f"model: {str(model_dir)!r} is not a saved model folder (no config.json){hint}")
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    return model, processor


@torch.no_grad()
def answer(model: Any, processor: Any, images: list, questions: list[str]) -> list[str]:
    """Greedy single-word answers (the argmax at the answer position) for a batch of image/question pairs."""
    processor.tokenizer.padding_side = "left"
    inputs = processor(images=images, text=[prompt(processor, q) for q in questions], return_tensors="pt",
                       padding=True)
    logits = model(**inputs.to(model.device)).logits[:, -1]
    return processor.tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
