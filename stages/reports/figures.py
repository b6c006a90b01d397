"""A matplotlib figure as PNG bytes, and PNG bytes as an inline <img> tag: what every report page
and plot file is made of (the pages fetch nothing). matplotlib is not imported here."""

from __future__ import annotations

import base64
import io
from typing import Any


def png(fig: Any, dpi: int) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def img(data: bytes, alt: str = "") -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
