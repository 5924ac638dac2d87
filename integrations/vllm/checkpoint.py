"""Checkpoint layout fixes between transformers 5.x ``save_pretrained`` and vLLM 0.32's weight loaders."""
from __future__ import annotations

import json
import shutil
from pathlib import Path


def llava_for_vllm(src: str | Path, dst: str | Path) -> Path:
    """Copies a LLaVA folder saved by transformers 5.x to ``dst`` with the CLIP tower's weights renamed
    ``vision_tower.<x>`` -> ``vision_tower.vision_model.<x>`` (the names vLLM's LLaVA loader expects)."""
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst, dirs_exist_ok=True)
    files = sorted(dst.glob("*.safetensors"))
    index = dst / "model.safetensors.index.json"
    renamed: dict[str, str] = {}
    for f in files:
        sd = load_file(f)
        out = {}
        for k, v in sd.items():
            nk = k
            if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model."):
                nk = "vision_tower.vision_model." + k[len("vision_tower."):]
            renamed[k] = nk
            out[nk] = v.contiguous()
        save_file(out, f, metadata={"format": "pt"})
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {renamed.get(k, k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=1))
    return dst
