"""The HTTP service of ``zoolens serve``: a JSON API and a web page over a `ModelIndex`.

```python
from zoolens.service import create_app

app = create_app("my-index", token_file="token.txt")  # serve with uvicorn
```

Needs the ``serve`` extra (fastapi, uvicorn, python-multipart).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app"]


def create_app(
    index_dir: Any, token_file: Any = None, max_upload_mb: float = 256, map_at_start: bool = False
) -> FastAPI:
    """See `zoolens.service.app.create_app`; imported here lazily (fastapi is optional)."""
    from zoolens.optional import optional_import

    optional_import("fastapi", "zoolens serve", "serve")
    if importlib.util.find_spec("python_multipart") is None:  # older releases: `multipart`
        optional_import("multipart", "zoolens serve (uploads)", "serve", "python-multipart")
    from zoolens.service.app import create_app as make

    return make(index_dir, token_file, max_upload_mb, map_at_start)
