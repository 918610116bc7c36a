"""Fixtures for index tests: a fake encoder, tiny nets in memory and on disk."""

from __future__ import annotations

import os
from collections.abc import Callable

import faiss
import pytest

from zoolens.ir import Net

from .fake_encoder import StatsEncoder, tiny_net

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session", autouse=True)
def one_faiss_thread():
    """FAISS builds run 2-4x slower with two OpenMP threads on the shared 2-core CI machine."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture
def encoder() -> StatsEncoder:
    return StatsEncoder()


@pytest.fixture(scope="session")
def nets() -> list[Net]:
    """30 distinct tiny MLPs (seeds 0..29)."""
    return [tiny_net(seed) for seed in range(30)]


@pytest.fixture
def model_dir(tmp_path, nets) -> Callable[[int], str]:
    """``model_dir(i)``: net i saved as ``tmp/models/m{i}`` (written once)."""

    def make(i: int) -> str:
        path = str(tmp_path / "models" / f"m{i}")
        if not os.path.isdir(path):
            nets[i].save(path)
        return path

    return make
