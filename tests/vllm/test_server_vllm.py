"""The OpenAI-compatible server with the plugin: chat requests with base64 images, 16 concurrent requests equal the
sequential answers, prompt tokens reflect the pruning; the server is stopped by its PID."""
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import HERE  # noqa: F401  (the package's conftest skips without vllm)

pytestmark = pytest.mark.vllm
CFG = {"stages": [{"at": "pre_llm", "keep": 64, "scorer": "norm", "selector": "maxmin"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def _chat(port: int, model: str, image, question: str) -> tuple[str, int]:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    out = _post(port, {"model": model, "temperature": 0, "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]}]})
    return out["choices"][0]["message"]["content"], out["usage"]["prompt_tokens"]


def test_server_concurrent_requests_match_sequential(shapes_dirs):
    from tokenprune.shapesvqa.data import examples

    _, model_dir = shapes_dirs
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1",
           "TOKENPRUNE_VLLM_CONFIG": json.dumps(CFG)}
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                             "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
                             "--max-model-len", "1024", "--max-num-seqs", "8", "--seed", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("server did not start: " + (proc.stderr.read()[-3000:] if proc.poll() else "timeout"))
                time.sleep(1)
        exs = examples("test", 4)
        sequential = [_chat(port, str(model_dir), e.image(), e.qa.question) for e in exs]
        with ThreadPoolExecutor(max_workers=16) as pool:
            concurrent = list(pool.map(lambda i: _chat(port, str(model_dir), exs[i % 4].image(), exs[i % 4].qa.question),
                                       range(16)))
        assert all(c == sequential[i % 4] for i, c in enumerate(concurrent))
        # chat prompt = text tokens + 64 image tokens (576 before pruning)
        assert all(tokens < 576 for _, tokens in sequential)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
