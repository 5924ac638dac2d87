#!/usr/bin/env bash
# Creates .venv-lmms with lmms-eval 0.7.3 (CPU torch 2.13.0, transformers held at tokenprune's pin) and tokenprune,
# for the lmms-eval plugin and its tests. Workarounds (DESIGN.md §7): lmms-eval alone pulls a newer transformers
# (constrained here) and the newest torchvision, which needs a newer (CUDA) torch (held at 0.28.0, torch 2.13's);
# filelock>=4 breaks every run while exiting 0 (pinned <4); PyPI's torchvision needs the torchvision::nms/qnms
# schemas before import on CPU torch (the .pth start-up hook of integrations/vllm/tv_shim.py).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-lmms/bin/python ] || python3 -m venv .venv-lmms
.venv-lmms/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv-lmms/bin/python -m pip install -q "torch==2.13.0"
.venv-lmms/bin/python -m pip install -q "lmms-eval==0.7.3" "torch==2.13.0" "torchvision==0.28.0" "transformers>=5.16.1,<5.20" "filelock<4"
.venv-lmms/bin/python -m pip install -q -e ".[dev]"
site=$(.venv-lmms/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp integrations/vllm/tv_shim.py "$site/tokenprune_tv_shim.py"
echo "import tokenprune_tv_shim; tokenprune_tv_shim.install()" > "$site/tokenprune_tv_shim.pth"
.venv-lmms/bin/python -c "import lmms_eval, transformers; print('lmms-eval ready, transformers', transformers.__version__)"
