"""HF_HUB_OFFLINE handling and weights sources shared by the weight loaders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from neckkit.errors import NeckkitError, first_line
from neckkit.loading.hub import WeightsSource, Wording, hub_location, hub_offline


@pytest.mark.parametrize(
    ("value", "offline"), [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("false", False)]
)
def test_hub_offline_reads_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, offline: bool) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline
    assert hub_location() == ("the Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the Hugging Face Hub")


def test_unset_means_online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not hub_offline()


WORDING = Wording(
    name="Toy weights",
    hub_id="owner/toy",
    folder="holds config.json",
    folder_hint="pass --toy-weights with another folder",
    flag="--toy-weights",
    fallback="--tiny",
    patterns=("*.json",),
)


def test_weights_source_tells_folders_files_and_hub_ids(tmp_path: Path, hub_cache: Path) -> None:
    folder = WeightsSource(str(tmp_path), WORDING)
    assert (folder.folder, folder.hub_id, folder.pretrained) == (tmp_path, None, str(tmp_path))
    assert str(folder.fail("config.json not found")) == (
        f"cannot load Toy weights the local folder {str(tmp_path)!r}: config.json not found. "
        "pass --toy-weights with another folder"
    )
    (tmp_path / "file").write_text("x")
    with pytest.raises(NeckkitError, match=r"^Toy weights '.*file' is a file; pass the folder that holds config"):
        WeightsSource(str(tmp_path / "file"), WORDING)
    with pytest.raises(NeckkitError, match=r"folder '\./nowhere' does not exist \(.* such as 'owner/toy'\)$"):
        WeightsSource("./nowhere", WORDING)
    hub = WeightsSource("owner/name", WORDING)  # no fetch: left to from_pretrained
    assert (hub.folder, hub.pretrained) == (None, "owner/name")
    assert hub.hint() == (
        'Download them (`hf download owner/name --include "*.json"`), pass --toy-weights /path/to/folder, or use --tiny'
    )
    assert hub.hint(["a.json", "b.json"]).startswith("Download them (`hf download owner/name a.json b.json`)")
    loading = WeightsSource("owner/name", replace(WORDING, loading="Toy", pronoun="it", patterns=()))
    assert str(loading.fail("gone")) == (
        "cannot load Toy 'owner/name' from the Hugging Face cache (HF_HUB_OFFLINE is set): gone. "
        "Download it (`hf download owner/name`), pass --toy-weights /path/to/folder, or use --tiny"
    )


def test_weights_source_fetch_offline_is_one_line(hub_cache: Path) -> None:
    with pytest.raises(NeckkitError) as error:
        WeightsSource("owner/uncached", WORDING, fetch=["config.json"])
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("cannot load Toy weights 'owner/uncached' from the Hugging Face cache")
    hint = '(`hf download owner/uncached --include "*.json"`), pass --toy-weights /path/to/folder, or use --tiny'
    assert message.endswith(hint)
    with pytest.raises(NeckkitError, match="^Toy weights 'not a repo!' are neither a local folder nor a hub id like"):
        WeightsSource("not a repo!", WORDING, fetch=["config.json"])


def test_first_line() -> None:
    assert first_line(OSError("No such file.\nDetails follow")) == "No such file"
    assert first_line(ValueError("  ")) == "ValueError"
