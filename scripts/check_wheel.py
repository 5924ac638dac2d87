"""Run by scripts/check_wheel.sh inside the fresh venv: every source package and entry point imports from the wheel."""
import importlib
import os
import sys
from importlib.metadata import entry_points

root, site = sys.argv[1], sys.argv[2]
packages = []
for top, name in (("tokenprune", "tokenprune"), ("integrations", "tokenprune.integrations")):
    for d, _, files in os.walk(os.path.join(root, top)):
        if "__init__.py" in files and "__pycache__" not in d:
            rel = os.path.relpath(d, os.path.join(root, top))
            packages.append(name if rel == "." else name + "." + rel.replace(os.sep, "."))
bad = []
for p in sorted(packages):
    try:
        mod = importlib.import_module(p)
    except Exception as e:  # noqa: BLE001 - report every failure
        bad.append(f"{p}: {type(e).__name__}: {e}")
        continue
    if not os.path.realpath(mod.__file__).startswith(os.path.realpath(site)):
        bad.append(f"{p}: imported from {mod.__file__}, not from the installed wheel")
eps = [ep for group in ("console_scripts", "vllm.general_plugins", "lmms_eval.models") for ep in entry_points(group=group)
       if ep.value.startswith("tokenprune")]
for ep in eps:
    try:
        ep.load()
    except Exception as e:  # noqa: BLE001
        bad.append(f"entry point {ep.group}:{ep.name}: {type(e).__name__}: {e}")
assets = os.path.join(site, "tokenprune", "assets", "shapesvqa", "model.safetensors")
if not os.path.isfile(assets):
    bad.append("the embedded model's weights are missing from the wheel")
if bad or len(eps) < 3:
    sys.exit("wheel check failed:\n  " + "\n  ".join(bad or [f"entry points found: {eps}"]))
print(f"wheel check: {len(packages)} packages and {len(eps)} entry points import from the installed wheel")
