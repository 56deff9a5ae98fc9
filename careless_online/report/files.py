"""Atomic writes: a reader of the live report never sees half a file.

Each file is written under a temporary name in the same folder and then
renamed over the old one with :func:`os.replace` (atomic on POSIX file
systems).
"""

import io
import json
import math

from careless_online.io.atomic import write_bytes


def replace_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically (:func:`careless_online.io.atomic.write_bytes`)."""
    write_bytes(path, data)


def _plain(value):
    """JSON-safe copy: NaN and infinities become None, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def replace_json(path, value):
    """Write ``value`` as strict JSON (no NaN) to ``path`` atomically."""
    replace_bytes(path, json.dumps(_plain(value), indent=1, allow_nan=False).encode())


def figure_png(figure, dpi=100):
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
