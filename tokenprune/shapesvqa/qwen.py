"""The second ShapesVQA model: Qwen2-VL architecture (native-resolution tower, 2×2 patch merger, M-RoPE, two-frame
temporal patches) with an offline word-level tokenizer, processor and chat template — images at several non-square
sizes and 8-frame clips; the embedded checkpoint is ``--model embedded-qwen``."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from ..testing.tiny import BOS, PAD
from .clip_questions import clip_vocabulary
from .qwen_processor import QwenShapesProcessor

EMBEDDED_QWEN_DIR = Path(__file__).resolve().parent.parent / "assets" / "shapesvqa_qwen"
#: (width, height) canvases the model is trained and evaluated on (multiples of 28: no resize in the processor)
IMAGE_SIZES = ((336, 336), (392, 252), (252, 392), (448, 280), (280, 448))
VISION_TOKENS = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
MERGE = 28  # pixels per LLM token side (patch 14 × merge 2)
GEOMETRY = dict(vision_hidden=128, vision_layers=4, vision_heads=4, hidden=192, layers=4, heads=6, kv_heads=2,
                inter=512)
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() }} : {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|> "
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|> "
    "{% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT :{% endif %}"
)


def make_tokenizer() -> Any:
    """Word-level fast tokenizer: specials, the chat words, every ShapesVQA image and clip word, then the four
    Qwen vision tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": 2, "<unk>": 3}
    for w in ["USER", "ASSISTANT", ":"] + clip_vocabulary() + VISION_TOKENS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.add_special_tokens({"additional_special_tokens": VISION_TOKENS})
    return fast


def make_processor() -> QwenShapesProcessor:
    """The offline processor (images up to 448×448 kept at their size; clips as given; no torchvision needed)."""
    import transformers as tf

    kw = dict(min_pixels=56 * 56, max_pixels=448 * 448, patch_size=14, merge_size=2, temporal_patch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ip = tf.Qwen2VLImageProcessor(**kw)
    return QwenShapesProcessor(ip, make_tokenizer(), CHAT_TEMPLATE)


def make_config(**overrides: Any) -> Any:
    import transformers as tf

    g = {**GEOMETRY, **overrides}
    tok = make_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    hd = g["hidden"] // g["heads"]
    vision = dict(depth=g["vision_layers"], embed_dim=g["vision_hidden"], num_heads=g["vision_heads"], mlp_ratio=2,
                  hidden_size=g["hidden"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    text = dict(vocab_size=len(tok), hidden_size=g["hidden"], num_hidden_layers=g["layers"],
                num_attention_heads=g["heads"], num_key_value_heads=g["kv_heads"], intermediate_size=g["inter"],
                max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=False,
                pad_token_id=PAD, bos_token_id=BOS, eos_token_id=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                 "mrope_section": [hd // 2 - 2 * (hd // 6), hd // 6, hd // 6]})
    cfg = tf.Qwen2VLConfig(vision_config=vision, text_config=text, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    return cfg


def make_model(seed: int = 0, **overrides: Any) -> Any:
    import transformers as tf

    from .model import seeded_model

    return seeded_model(tf.Qwen2VLForConditionalGeneration, make_config(**overrides), seed)


def prompt(processor: Any, question: str, media: str = "image") -> str:
    """The chat prompt for one image (or ``media="video"``: one clip) and one question, ending where the answer
    starts."""
    msgs = [{"role": "user", "content": [{"type": media}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(msgs, add_generation_prompt=True)


def inputs(processor: Any, questions: Sequence[str], images: Sequence | None = None,
           videos: Sequence | None = None) -> Any:
    """Left-padded model inputs for a batch of image (or clip: ``[T, H, W, 3]`` uint8 frames) / question pairs."""
    processor.tokenizer.padding_side = "left"
    media = "video" if videos is not None else "image"
    kw: dict[str, Any] = {"videos": list(videos)} if videos is not None else {"images": list(images)}
    return processor(text=[prompt(processor, q, media) for q in questions], return_tensors="pt", padding=True, **kw)


def load(model_dir: str | Path = "embedded-qwen", dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """Loads a Qwen ShapesVQA model and its processor (``"embedded-qwen"``: the shipped checkpoint)."""
    from transformers import Qwen2VLForConditionalGeneration

    from ..errors import InputError

    path = EMBEDDED_QWEN_DIR if str(model_dir) == "embedded-qwen" else Path(model_dir)
    if not (path / "config.json").is_file():
        hint = " (the embedded checkpoint is missing from this install)" if str(model_dir) == "embedded-qwen" else ""
        raise InputError(f"model: {str(model_dir)!r} is not a saved model folder (no config.json){hint}")
    model = Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=dtype, local_files_only=True).eval()
    return model, QwenShapesProcessor.from_pretrained(path)


@torch.no_grad()
def answer(model: Any, processor: Any, questions: Sequence[str], images: Sequence | None = None,
           videos: Sequence | None = None) -> list[str]:
    """Greedy single-word answers (the argmax at the answer position)."""
    batch = inputs(processor, questions, images, videos)
    logits = model(**batch.to(model.device)).logits[:, -1]
    return processor.tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
