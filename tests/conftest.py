import functools

import pytest
import torch

from tokenprune.testing.tiny import FAMILIES, Item, make_inputs, make_model

torch.set_grad_enabled(False)

# random-weight models may emit EOS or a placeholder id; keep generated continuations comparable
SUPPRESS = [2, 150, 151, 152, 153]
GEN = {"suppress_tokens": SUPPRESS, "pad_token_id": 0}


@functools.lru_cache(maxsize=None)
def tiny(family: str, attn: str = "sdpa"):
    return make_model(family, attn=attn)


def item(family: str, big: bool = False) -> Item:
    if family.startswith("qwen"):
        return Item((112, 140) if big else (112, 112))
    return Item((56, 56) if family == "llava" else ((56, 28) if big else (56, 56)))


def batch(family: str, model, padding: str = "left", seed: int = 0):
    """Three rows: one image, two images, text only."""
    return make_inputs(family, model, [[item(family)], [item(family, True), item(family)], []],
                       padding=padding, seed=seed)


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param
