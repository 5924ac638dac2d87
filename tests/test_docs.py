"""The docs' methods table is generated from the specs and kept current."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "methods.md"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_methods_doc", ROOT / "scripts" / "gen_methods_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not DOC.exists(), reason="docs/methods.md not present")
def test_methods_table_is_current():
    from tokenprune.registry import SCORERS

    text = DOC.read_text()
    assert _gen().render(text) == text, "run: python scripts/gen_methods_doc.py"
    for name in SCORERS.names():
        assert f"`{name}`" in text
