"""`GraphCache`: what building many neural graphs can share, held by whoever builds them.

Nets of one architecture give graphs with the same wiring (edges, edge types, node roles,
positions, layers) and the same value shapes; only weights and node features differ. A
`GraphCache` keeps those architecture parts (keyed by `Net.arch_key`) and probe input sets,
each in a bounded least-recently-used table. Nothing is shared between two caches and
nothing is kept at module level: an encoder owns one, a script makes its own, and
``cache=None`` builds from scratch (the same graph, only slower).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from zoolens.graph.probes import default_probes
from zoolens.ir import ValueInfo

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class ArchParts:
    """The parts of a net's graph that depend only on its architecture.

    Attributes:
        infos: `Net.value_infos` of the architecture.
        structure: `NeuralGraph` field name → tensor (edge_index, edge_type, role,
            position, layer); never handed out without a copy.
    """

    infos: dict[str, ValueInfo]
    structure: dict[str, torch.Tensor]


class _LRU(Generic[K, V]):
    """A bounded mapping that drops its least recently used entry first (thread-safe)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"cache size {size}: expected >= 0")
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def __getstate__(self) -> dict[str, int]:  # a copy (pickle, deepcopy) starts empty
        return {"size": self.size}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["size"])  # type: ignore[misc]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class GraphCache:
    """Architecture parts and probe sets for `net_to_graph`, owned by its caller.

    Args:
        max_architectures: architectures kept (least recently used dropped first).
        max_probe_sets: probe input sets kept, one per (input shape, count, seed, kind).

    Example:
        >>> cache = GraphCache()
        >>> graphs = [net_to_graph(n, probes=cache.probes(n.input_shape, 16), cache=cache)
        ...           for n in nets]
    """

    def __init__(self, max_architectures: int = 64, max_probe_sets: int = 16) -> None:
        self._parts: _LRU[str, ArchParts] = _LRU(max_architectures)
        self._probes: _LRU[tuple[tuple[int, ...], int, int, str], torch.Tensor] = _LRU(
            max_probe_sets
        )
        self.hits = 0
        self.misses = 0

    def parts(self, key: str) -> ArchParts | None:
        """The parts of the architecture with `Net.arch_key` `key`, if held (counted as a
        hit or a miss)."""
        parts = self._parts.get(key)
        if parts is None:
            self.misses += 1
        else:
            self.hits += 1
        return parts

    def put(self, key: str, parts: ArchParts) -> None:
        """Keep `parts` for the architecture `key`, dropping the least recently used
        architecture past the bound."""
        self._parts.put(key, parts)

    def probes(
        self, input_shape: tuple[int, ...], n: int, seed: int = 0, kind: str = "sobol"
    ) -> torch.Tensor:
        """`default_probes` ``(n, *input_shape)``, drawn once per argument set; each call
        returns a copy."""
        key = (tuple(int(s) for s in input_shape), int(n), int(seed), str(kind))
        x = self._probes.get(key)
        if x is None:
            x = default_probes(*key)
            self._probes.put(key, x)
        return x.clone()

    def __len__(self) -> int:
        """Architectures held."""
        return len(self._parts)

    def clear(self) -> None:
        """Drop every entry and reset the counts."""
        self._parts.clear()
        self._probes.clear()
        self.hits = self.misses = 0

    def stats(self) -> dict[str, int]:
        """Hits and misses of architecture look-ups, architectures and probe sets held."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "architectures": len(self._parts),
            "probe_sets": len(self._probes),
        }
