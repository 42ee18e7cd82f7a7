"""Hugging Face Hub facts that weight loaders put into their error messages."""

from __future__ import annotations

import os


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set: loaders read only the local cache."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("", "0", "false", "no")


def hub_location() -> str:
    """Where a hub id is looked up, for "cannot load X from <where>" messages."""
    return "the Hugging Face cache (HF_HUB_OFFLINE is set)" if hub_offline() else "the Hugging Face Hub"
