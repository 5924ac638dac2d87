"""The docs' methods table is generated from the specs and kept current."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "methods.md"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_methods_doc", ROOT / "scripts" / "gen_methods_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_methods_table_is_current():
    from tokenprune.registry import SCORERS

    text = DOC.read_text()
    assert _gen().render(text) == text, "run: python scripts/gen_methods_doc.py"
    for name in SCORERS.names():
        assert f"`{name}`" in text


def test_result_files_hold_no_local_paths():
    import re

    for f in list((ROOT / "evals").glob("*.json")) + list((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        assert not re.search(r'"/(work|tmp|root|home)/', f.read_text()), f"{f} records a local path"


def test_model_identity_is_content_based(tmp_path):
    from tokenprune.results import model_identity

    (tmp_path / "model.safetensors").write_bytes(b"abc")
    a = model_identity(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    b = model_identity(str(tmp_path))
    assert a["name"] == tmp_path.name and a["weights_sha256"] != b["weights_sha256"]
