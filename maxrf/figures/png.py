"""Writing and reading the PNG files of every figure: matplotlib on the Agg backend, atomic saves
with the key of what a figure shows in a PNG text field, data URIs for the Prefect UI."""

from __future__ import annotations

from pathlib import Path

from maxrf.io.atomic import atomic_write

KEY_FIELD = "maxrf-key"  # PNG text field: the key of what a plot shows, like a layer's key
EXPORT_DPI = 300  # figures that can be printed and published
SCREEN_DPI = 110  # figures looked at on a screen beside the datastack


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported when a figure is drawn (~0.4 s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = SCREEN_DPI, key: str | None = None,
             tight: bool = False) -> Path:
    """Write ``fig`` to ``path`` atomically (``key`` in its text field) and close it."""
    plt = pyplot()
    if not tight:
        fig.tight_layout()
    meta = {KEY_FIELD: key} if key else None

    def write(tmp):
        fig.savefig(tmp, dpi=dpi, format="png", metadata=meta,
                    bbox_inches="tight" if tight else None)

    try:
        return atomic_write(Path(path), write)
    finally:
        plt.close(fig)


def png_key(path: Path) -> str | None:
    """The key a figure was drawn for (None: no figure there, or drawn without a key)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.text.get(KEY_FIELD)  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return None


def png_data_uri(path: Path, max_width: int = 1600) -> str:
    """The PNG as a ``data:`` URI (the Prefect UI shows these inline; file links it cannot)."""
    import base64
    import io

    from PIL import Image

    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        if im.width > max_width:
            small = im.resize((max_width, round(im.height * max_width / im.width)))
            buf = io.BytesIO()
            small.save(buf, format="PNG", optimize=True)
            data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode()
