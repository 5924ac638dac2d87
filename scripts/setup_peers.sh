#!/usr/bin/env bash
# Creates .venv-peers with the two peer packages that evals/peers.py compares tokenprune with: angelslim-fork
# 20260412 (a snapshot of Tencent AngelSlim, token_compressor: DivPrune, VisionZip, FastV-like attention pruning) and
# sparsevlm 0.1.3 (SparseVLM, ICML 2025), beside CPU torch 2.13.0 and tokenprune. Nothing in tokenprune/ or tests/
# imports them. Workarounds: angelslim-fork's full requirements pull lm_eval, torchvision and more that its
# token_compressor never imports, so it goes in with --no-deps plus the modules its package __init__ chain imports
# (datasets, triton, threadpoolctl, shortuuid, tiktoken); torch and transformers are held at tokenprune's pins.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-peers/bin/python ] || python3 -m venv .venv-peers
.venv-peers/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv-peers/bin/python -m pip install -q "torch==2.13.0" "transformers>=5.16.1,<5.20"
.venv-peers/bin/python -m pip install -q -e . "tqdm>=4.66"
.venv-peers/bin/python -m pip install -q --no-deps "angelslim-fork==20260412"
.venv-peers/bin/python -m pip install -q "sparsevlm==0.1.3" datasets triton threadpoolctl shortuuid tiktoken \
  "torch==2.13.0" "transformers>=5.16.1,<5.20"
.venv-peers/bin/python -c "
import angelslim.compressor.token_compressor.adapter, sparsevlm, transformers
print('peers ready: sparsevlm', sparsevlm.__version__, 'transformers', transformers.__version__)"
