"""Text overview of a datastack, and finding a layer version by its cache key."""

from __future__ import annotations

import zipfile
from typing import TYPE_CHECKING

from maxrf.datastack import layers as L
from maxrf.errors import DataStackError

if TYPE_CHECKING:
    from maxrf.datastack.store import DataStack


def format_tree(ds: DataStack, show_arrays: bool = False) -> str:
    """Layers with shape, dtype, stored size and the step that made them."""
    snap = ds.snapshot()
    fileobj = snap.fileobj
    fileobj.seek(0)
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(fileobj) as zf:
        for info in zf.infolist():
            top = info.filename.split("/")[0]
            sizes[top] = sizes.get(top, 0) + info.compress_size
    total = ds.path.stat().st_size
    lines = [f"{ds.path}  ({_human(total)}, {len(snap.names)} layers)"]
    for name in snap.names:
        try:
            a = ds.array(name, latest=False)
        except DataStackError as exc:
            lines.append(f"  {name:<28} damaged: {exc.reason}")
            continue
        shape = "x".join(map(str, a.shape)) or "scalar"
        meta = a.attrs.get("maxrf", {})
        step = f"  [{meta['step']}]" if isinstance(meta, dict) and meta.get("step") else ""
        lines.append(
            f"  {name:<28} {shape:>18} {str(a.dtype):>8} {_human(sizes.get(name, 0)):>10}{step}"
        )
        if show_arrays:
            lines.append(
                f"      chunks {a.chunks}, codecs {[type(c).__name__ for c in a.compressors]}"
            )
    return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def find_by_key(ds: DataStack, name: str, key: str) -> str | None:
    """The newest stored version of layer ``name`` whose provenance records cache ``key``."""
    try:
        names = ds.layers
    except DataStackError:
        return None
    for stored in reversed(L.versions(name, names)):
        meta = ds.attrs(stored, latest=False).get("maxrf", {})
        if meta.get("cache_key") == key and meta.get("complete"):
            return stored
    return None
