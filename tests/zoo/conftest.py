"""A micro zoo preset, generated once per test session (a few seconds on one core)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from zoolens.zoo import Zoo, ZooPreset, generate_zoo

MICRO = ZooPreset(
    name="micro",
    tasks=("digits", "digits-perm", "synth-a", "synth-b", "diabetes", "mnist1d"),
    families=("mlp", "resmlp", "cnn1d", "cnn2d-bn"),
    n_models=12,
    n_finetunes=3,
    epochs=(1, 3, 10),
    batch_sizes=(64, 128),
    widths=(16, 32),
    depths=(1, 2),
    max_steps=25,
    inr_tasks=("inr-digits", "inr-mnist"),
    n_inrs=4,
    inr_batch=2,
    inr_depths=(1,),
    inr_widths=(8,),
    inr_steps=(20,),
)


#: Three tasks, two families, one fine-tune, two INRs: for tests that generate zoos.
SMALL = replace(
    MICRO,
    name="small",
    tasks=("digits", "synth-a", "diabetes"),
    families=("mlp", "cnn2d-bn"),
    n_models=4,
    n_finetunes=1,
    n_inrs=2,
    inr_tasks=("inr-digits",),
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors: one thread is faster, and generation uses one thread per process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def micro_preset() -> ZooPreset:
    return MICRO


@pytest.fixture(scope="session")
def small_preset() -> ZooPreset:
    return SMALL


@pytest.fixture(scope="session")
def micro_zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return generate_zoo(
        MICRO, str(tmp_path_factory.mktemp("zoo") / "micro"), seed=0, progress=False
    )


@pytest.fixture(scope="session")
def small_zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    """`SMALL` generated in this process with seed 3 (the reference for resume and jobs)."""
    return generate_zoo(
        SMALL, str(tmp_path_factory.mktemp("zoo") / "small"), seed=3, progress=False
    )
