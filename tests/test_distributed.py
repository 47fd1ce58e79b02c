"""stave.distributed in one process: the settings chosen for launched CPU processes, and the teardown of a
process group that starts inside a stave command. (Launched runs: test_training.py, test_evaluation.py.)"""

from __future__ import annotations

import pytest
import torch.distributed as dist
from accelerate import PartialState

import stave.distributed
from stave.distributed import owned_process_group, training_settings


@pytest.mark.parametrize(
    ("world_size", "found", "values", "expected"),
    [
        ("2", None, {}, {"use_cpu": True, "ddp_backend": "gloo"}),
        ("2", None, {"use_cpu": False, "ddp_backend": "mpi"}, {"use_cpu": True, "ddp_backend": "mpi"}),
        ("2", "cuda", {}, {}),  # GPUs: the Trainer joins the processes itself (nccl)
        ("1", None, {}, {}),  # no launcher, or one process: nothing to join
    ],
)
def test_launched_cpu_processes_train_with_use_cpu_and_gloo(monkeypatch, world_size, found, values, expected):
    monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setattr(stave.distributed, "accelerator", lambda: found)
    assert training_settings({"learning_rate": 0.1, **values}) == {"learning_rate": 0.1, **values, **expected}


def test_a_process_group_started_inside_is_taken_down_and_one_from_before_is_left(tmp_path):
    with owned_process_group():
        dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "a"), 1), rank=0, world_size=1)
        assert PartialState(cpu=True).num_processes == 1 and PartialState._shared_state
    assert not dist.is_initialized()
    assert not PartialState._shared_state  # accelerate's state does not point at the destroyed group

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "b"), 1), rank=0, world_size=1)
    try:
        with owned_process_group():
            pass
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
        PartialState._reset_state()
