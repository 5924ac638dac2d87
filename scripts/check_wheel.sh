#!/usr/bin/env bash
# Builds the wheel, installs it (no deps) into a fresh venv that borrows .venv's dependencies, and imports every
# package of the source tree and every entry point from the installed copy (an editable install would hide a package
# missing from the wheel). Usage: bash scripts/check_wheel.sh   (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-deps "$work"/dist/tokenprune-*.whl
deps=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$deps" > "$site/zz_borrowed_deps.pth"  # appended after the venv's own site-packages: the wheel wins
rm -rf build
cd "$work" && "$work/venv/bin/python" "$root/scripts/check_wheel.py" "$root" "$site"
