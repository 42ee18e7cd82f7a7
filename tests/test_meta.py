"""Meta-tests (as datasette has): every hook is documented and tested; docs name real things."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import test_hooks

from neckkit.host import hookspecs

REPO = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))
PLUGIN_DOC = (REPO / "docs" / "writing-a-plugin.md").read_text()


def test_hook_list_is_the_designed_one() -> None:
    assert HOOKS == ["register_codecs", "register_commands", "register_encoders", "register_mllms"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    assert re.search(rf"^### `{hook}\(", PLUGIN_DOC, flags=re.MULTILINE), f"docs/writing-a-plugin.md lacks {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str) -> None:
    assert hasattr(test_hooks, f"test_hook_{hook}"), f"tests/test_hooks.py lacks test_hook_{hook}"


def test_docs_index_links_existing_pages() -> None:
    index = (REPO / "docs" / "index.md").read_text()
    links = re.findall(r"\]\(([^)#]+\.md)\)", index)
    assert links
    for link in links:
        assert (REPO / "docs" / link).is_file(), link
