"""The benchmark runner: trains what needs training, measures every encoder, writes the report.

    from zoolens.bench import BenchmarkConfig, run_benchmark

    results = run_benchmark(BenchmarkConfig(zoo="zoos/tiny", out="bench/tiny"))

The top library layer: it uses `zoolens.train`, `zoolens.nn`, `zoolens.zoo` and the metrics
of `zoolens.eval`; nothing in the library below it imports it (the import contract in
``.importlinter`` holds that). Importing this package does no work: the runner and its
dependencies (torch, matplotlib) load on first use of a name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoolens.bench.runner import BenchmarkConfig, run_benchmark

__all__ = ["BenchmarkConfig", "run_benchmark"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from zoolens.bench import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'zoolens.bench' has no attribute {name!r}")
