"""Docs generated from the code must match it."""

from pathlib import Path

from dnerv_codec.clidocs import markdown

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_generated_from_the_help_text():
    assert (ROOT / "docs" / "cli.md").read_text() == markdown(), \
        "docs/cli.md is stale: python -m dnerv_codec.clidocs > docs/cli.md"


def test_the_api_examples_run(tmp_path, monkeypatch):
    """docs/api.md's examples, in page order in one namespace, in a fresh folder: what a
    reader copies works."""
    import re
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert (tmp_path / "clip.dnv").stat().st_size == namespace["stats"]["bytes"]
