"""HF_HUB_OFFLINE handling shared by the weight loaders."""

from __future__ import annotations

import pytest

from neckkit.hub import hub_location, hub_offline


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
