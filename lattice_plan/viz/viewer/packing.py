"""Arrays as text for the page: base64 of zlib-deflated bytes.

The browser inflates them with ``DecompressionStream('deflate')`` (the zlib
format), which every current browser has built in, so the page needs no
library and nothing from the network.
"""

from __future__ import annotations

import base64
import zlib


def pack_bytes(data: bytes) -> str:
    """base64 text of the zlib-deflated ``data``."""
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")
