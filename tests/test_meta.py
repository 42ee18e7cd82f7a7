"""Meta-tests (as datasette has): every hook and plugin-API name is documented and tested; docs name real things."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import test_hooks

from neckkit import plugin_api
from neckkit.host import hookspecs
from neckkit.host.options import STANDARD_OPTIONS
from neckkit.host.registry import ComponentInfo

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


# --- the plugin API (datasette's test_docs.py style) -------------------------------------------

PLUGIN_API_TESTS = (REPO / "tests" / "test_plugin_api.py").read_text()


@pytest.mark.parametrize("name", plugin_api.__all__)
def test_every_plugin_api_name_is_documented(name: str) -> None:
    assert re.search(rf"`{re.escape(name)}[`(]", PLUGIN_DOC), f"docs/writing-a-plugin.md does not document {name}"


@pytest.mark.parametrize("name", plugin_api.__all__)
def test_every_plugin_api_name_is_exercised_by_a_test(name: str) -> None:
    assert re.search(rf"\bapi\.{re.escape(name)}\b", PLUGIN_API_TESTS), (
        f"tests/test_plugin_api.py never uses api.{name}"
    )


def test_every_register_info_field_is_documented() -> None:
    for field in ComponentInfo.model_fields:
        assert re.search(rf"^\| `{field}` \|", PLUGIN_DOC, flags=re.MULTILINE), f"register field {field} undocumented"


def test_every_standard_factory_option_is_in_the_option_table() -> None:
    for option in STANDARD_OPTIONS:
        assert re.search(rf"^\| `{option.name}` \| {option.type.__name__} \|", PLUGIN_DOC, flags=re.MULTILINE), (
            option.name
        )


def test_the_guide_names_the_bundled_photos_and_synthesis_modules() -> None:
    assert "neckkit/samples/*.jpg" in PLUGIN_DOC
    for photo in plugin_api.sample_images():
        assert photo.stem in PLUGIN_DOC
    assert "synthesis_modules" in PLUGIN_DOC and '"d3"' in PLUGIN_DOC


def test_every_codec_method_is_in_the_codec_member_table() -> None:
    from neckkit.interfaces.codec import Codec

    methods = sorted(name for name, value in vars(Codec).items() if callable(value) and not name.startswith("_"))
    assert "update_entropy_tables" in methods
    for name in methods:
        assert re.search(rf"^\| `{name}` \|", PLUGIN_DOC, flags=re.MULTILINE), (
            f"Codec.{name} is not in the member table"
        )


def _table(heading_row: str) -> str:
    """The markdown table of the plugin guide whose header row starts with ``heading_row``."""
    start = PLUGIN_DOC.index(heading_row)
    end = PLUGIN_DOC.find("\n\n", start)
    return PLUGIN_DOC[start : end if end != -1 else None]


def test_every_wording_field_is_in_the_wording_table() -> None:
    import dataclasses

    from neckkit.loading.hub import Wording

    table = _table("| `Wording` field |")
    for field in dataclasses.fields(Wording):
        assert re.search(rf"^\| `{field.name}` \|", table, flags=re.MULTILINE), (
            f"Wording.{field.name} is not documented"
        )


def test_every_encoder_attribute_and_mllm_member_is_in_its_table() -> None:
    from neckkit.interfaces.encoder import VisualEncoder
    from neckkit.interfaces.mllm import MLLM

    attributes = _table("| attribute | type | meaning |")
    for name in VisualEncoder.__annotations__:
        assert re.search(rf"^\| `{name}` \|", attributes, flags=re.MULTILINE), f"VisualEncoder.{name} is not documented"
    assert "embed_dim" in VisualEncoder.__annotations__
    members = _table("| member | signature | contract |\n|---|---|---|\n| `encoder` |")
    public = [name for name in (*MLLM.__annotations__, *vars(MLLM)) if not name.startswith("_")]
    for name in public:
        assert re.search(rf"^\| `{name}` \|", members, flags=re.MULTILINE), f"MLLM.{name} is not documented"
    assert "generate_from_pixels" in public


def test_the_option_table_gives_entry_layers_range_and_compress_has_one_signature() -> None:
    assert re.search(r"^\| `entry_layer` \| int \| .*`0\.\.num_layers`", PLUGIN_DOC, flags=re.MULTILINE)
    assert "| `compress` | `(x, analysis=None) -> LatentPayload(strings, shape)` |" in PLUGIN_DOC
    assert "`compress` has one signature, `compress(self, x, analysis=None)`" in PLUGIN_DOC
