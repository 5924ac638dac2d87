"""Regenerates the methods table in docs/methods.md from the method specs: python scripts/gen_methods_doc.py"""
import pathlib
import sys

from tokenprune.cli.info import methods_markdown

START, END = "<!-- methods-table -->", "<!-- /methods-table -->"


def render(text: str) -> str:
    a, b = text.index(START) + len(START), text.index(END)
    return text[:a] + "\n" + methods_markdown() + "\n" + text[b:]


if __name__ == "__main__":
    path = pathlib.Path(__file__).resolve().parent.parent / "docs" / "methods.md"
    new = render(path.read_text())
    if "--check" in sys.argv:
        sys.exit(0 if new == path.read_text() else "docs/methods.md is stale: python scripts/gen_methods_doc.py")
    path.write_text(new)
