"""The OpenAI-compatible server with the plugin (chunked prefill and prefix caching on), one server for the module:
concurrent chat requests equal the sequential answers, per-request budgets, malformed requests answered with a 4xx
naming the problem, and a soak of 32 concurrent clients with bad requests mixed in (server alive, memory bounded).

``TOKENPRUNE_SOAK_OUT=FILE`` writes the soak's figures (requests, errors, latency percentiles, RSS) as JSON."""
import base64
import io
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import HERE  # noqa: F401  (the package's conftest skips without vllm)

pytestmark = [pytest.mark.vllm, pytest.mark.xdist_group("server")]  # one server per worker
CFG = {"stages": [{"at": "pre_llm", "keep": 64, "scorer": "norm", "selector": "maxmin"}]}
SOAK_REQUESTS = int(os.environ.get("TOKENPRUNE_SOAK_REQUESTS", "192"))
RSS_GROWTH_MB = 300  # growth of the server's process tree allowed between the warm-up and the end of the soak


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (the API server and its engine core)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total


def _png_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _body(model: str, question: str, image_url: str | None = None, budget=None) -> dict:
    content = ([{"type": "image_url", "image_url": {"url": image_url}}] if image_url else []) + \
        [{"type": "text", "text": question}]
    body = {"model": model, "temperature": 0, "max_tokens": 2, "messages": [{"role": "user", "content": content}]}
    if budget is not None:
        body["mm_processor_kwargs"] = {"tokenprune": budget}
    return body


def _post(port: int, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _answer(status: int, out: dict) -> tuple[str, int]:
    assert status == 200, out
    return out["choices"][0]["message"]["content"], out["usage"]["prompt_tokens"]


@pytest.fixture(scope="module")
def server(shapes_dirs):
    _, model_dir = shapes_dirs
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1",
           "TOKENPRUNE_VLLM_CONFIG": json.dumps(CFG)}
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                             "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
                             "--max-model-len", "1024", "--max-num-seqs", "8", "--seed", "0",
                             "--enable-chunked-prefill", "--max-num-batched-tokens", "256",
                             "--enable-prefix-caching", "--block-size", "32",
                             "--trust-request-mm-kwargs"],  # vLLM rejects per-request mm_processor_kwargs otherwise
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("server did not start: " + (proc.stderr.read()[-3000:] if proc.poll() else "timeout"))
                time.sleep(1)
        yield port, str(model_dir), proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _alive(port: int, proc) -> None:
    assert proc.poll() is None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        assert r.status == 200


def test_concurrent_requests_match_sequential(server):
    from tokenprune.shapesvqa.data import examples

    port, model, _ = server
    exs = [(_png_url(e.image()), e.qa.question) for e in examples("test", 4)]
    sequential = [_answer(*_post(port, _body(model, q, url))) for url, q in exs]
    with ThreadPoolExecutor(max_workers=16) as pool:
        concurrent = list(pool.map(lambda i: _answer(*_post(port, _body(model, exs[i % 4][1], exs[i % 4][0]))),
                                   range(16)))
    assert all(c == sequential[i % 4] for i, c in enumerate(concurrent))
    assert all(tokens < 576 for _, tokens in sequential)  # chat prompt = text + 64 image tokens (576 unpruned)


def test_per_request_budgets_over_http(server):
    """Two concurrent requests with different budgets each get their own prompt-token count (the server default is
    64 per image); the same budget again answers the same."""
    from tokenprune.shapesvqa.data import examples

    port, model, _ = server
    e = examples("test", 1)[0]
    url = _png_url(e.image())
    default = _answer(*_post(port, _body(model, e.qa.question, url)))
    with ThreadPoolExecutor(max_workers=2) as pool:
        small, large = pool.map(lambda b: _answer(*_post(port, _body(model, e.qa.question, url, b))),
                                [{"keep": 16}, {"keep": 0.5}])
    assert default[1] - small[1] == 64 - 16 and large[1] - default[1] == 288 - 64
    assert _answer(*_post(port, _body(model, e.qa.question, url, {"keep": 16}))) == small


@pytest.mark.parametrize("budget, field", [
    ({"keep": 0}, "mm_processor_kwargs.tokenprune.keep"),
    ({"keep": 1000}, "mm_processor_kwargs.tokenprune.keep=1000 asks for 1000 tokens"),
    ({"keep": "all"}, "mm_processor_kwargs.tokenprune.keep must be an int"),
    ({"scorer": "attention"}, "unknown field(s) 'scorer'"),
    (7, "mm_processor_kwargs.tokenprune must be an object"),
])
def test_bad_request_budget_is_a_400_naming_the_field(server, budget, field):
    from tokenprune.shapesvqa.data import examples

    port, model, proc = server
    e = examples("test", 1)[0]
    status, out = _post(port, _body(model, e.qa.question, _png_url(e.image()), budget))
    assert status == 400 and field in json.dumps(out), (status, out)
    _alive(port, proc)


def _soak_mix(model: str, n: int) -> list[tuple[str, dict]]:
    """(kind, body): good requests (four images with and without budgets, text-only), malformed ones (must be a
    4xx) and edge cases (a 1×1 image: LLaVA's processor resizes it, other families may refuse it — either way the
    concurrent answer must equal the sequential one)."""
    from PIL import Image

    from tokenprune.shapesvqa.data import examples

    exs = [(_png_url(e.image()), e.qa.question) for e in examples("test", 4)]
    tiny = _png_url(Image.new("RGB", (1, 1)))
    too_long = " ".join(["what"] * 1200)
    kinds = [
        ("good", lambda i: _body(model, exs[i % 4][1], exs[i % 4][0])),
        ("good", lambda i: _body(model, exs[i % 4][1], exs[i % 4][0], {"keep": (16, 144)[i % 2]})),
        ("good", lambda i: _body(model, "what shapes are there ?")),
        ("bad", lambda i: _body(model, exs[0][1], "data:image/png;base64,bm90IGFuIGltYWdl!!")),
        ("edge", lambda i: _body(model, exs[0][1], tiny)),
        ("bad", lambda i: _body(model, too_long, exs[0][0])),
        ("bad", lambda i: _body(model, exs[0][1], exs[0][0], {"keep": (-1, 10**9, "x", [1])[i % 4]})),
    ]
    rng = random.Random(0)
    return [(kind, make(i)) for i in range(n) for kind, make in [rng.choice(kinds)]]


def test_soak_32_clients_with_malformed_requests(server):
    port, model, proc = server
    mix = _soak_mix(model, SOAK_REQUESTS)
    expected = {json.dumps(b, sort_keys=True): _post(port, b) for kind, b in mix}  # sequential, one per body
    rss_start = _tree_rss_mb(proc.pid)

    def call(item):
        t = time.perf_counter()
        status, out = _post(port, item[1])
        return item[0], item[1], status, out, time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(call, mix))
    wall = time.perf_counter() - t0
    rss_end = _tree_rss_mb(proc.pid)
    for kind, body, status, out, _ in results:
        seq_status, seq_out = expected[json.dumps(body, sort_keys=True)]
        assert status == seq_status, (kind, status, out)
        if kind == "bad":
            assert 400 <= status < 500 and out.get("error", {}).get("message"), (status, out)
        if kind == "good":
            assert status == 200, out
        if status == 200:
            assert _answer(status, out) == _answer(seq_status, seq_out)
    _alive(port, proc)
    assert rss_end - rss_start < RSS_GROWTH_MB
    lat = sorted(r[4] for r in results)
    figures = {"requests": len(results), "good": sum(r[0] == "good" for r in results),
               "bad_4xx": sum(r[0] == "bad" for r in results), "edge": sum(r[0] == "edge" for r in results),
               "clients": 32, "wall_s": round(wall, 2),
               "p50_s": round(lat[len(lat) // 2], 3), "p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
               "rss_start_mb": round(rss_start), "rss_end_mb": round(rss_end),
               "statuses": sorted({r[2] for r in results})}
    print("SOAK", json.dumps(figures))
    if os.environ.get("TOKENPRUNE_SOAK_OUT"):
        Path(os.environ["TOKENPRUNE_SOAK_OUT"]).write_text(json.dumps(figures, indent=1) + "\n")
