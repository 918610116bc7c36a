"""The model index: a durable SQLite catalog of embedded models and a FAISS index over it.

```python
from zoolens.index import ModelIndex

with ModelIndex.open("my-index", encoder="default") as index:
    index.add(["a.onnx", "zoo-dir/"], metadata={"owner": "me"})
    scores, ids = index.search("query.onnx", k=10, where={"accuracy": (">=", 0.9)})
```
"""

from __future__ import annotations

from zoolens.index.adding import AddReport
from zoolens.index.filters import FilterError, parse_where
from zoolens.index.model_index import NO_HIT, ModelIndex
from zoolens.index.vectors import IndexConfig

__all__ = ["NO_HIT", "AddReport", "FilterError", "IndexConfig", "ModelIndex", "parse_where"]
