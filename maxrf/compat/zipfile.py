"""zipfile internals: ``ZipFile.NameToInfo`` (a dict of the central directory by name; the
public ``getinfo`` raises instead of answering, ``namelist`` copies every name)."""

from __future__ import annotations

import zipfile


def has_member(zf: zipfile.ZipFile, name: str) -> bool:
    """Whether the zip's central directory lists ``name`` (constant time)."""
    return name in zf.NameToInfo
