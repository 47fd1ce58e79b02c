"""The processes a launcher starts (`torchrun`, `accelerate launch`) as one run, or a named error.

A launcher announces its processes in the environment (WORLD_SIZE, RANK, LOCAL_RANK). The Trainer and
accelerate join them into one run only on a device accelerate knows how to use together: CUDA and the like
(nccl), or the CPUs when told to use them (`use_cpu`, `accelerate launch --cpu`; gloo). Without an
accelerator and without that flag, accelerate's set-up reports one process in each (`DistributedType.NO`)
and every process would train alone on the same data, writing the same folder. So stave:
  - chooses the CPU set-up itself where the machine has no accelerator (`training_settings`, logged);
  - checks, once accelerate's state exists and before any model is built, that the run has as many
    processes as the launcher started (`check_joined`), else raises LaunchError naming both and the fix;
  - takes a process group that started inside its command down at the end, on every rank after a barrier
    (`owned_process_group`), so no rank aborts at exit;
  - shards with FSDP on the CPUs when FSDP was asked for (`shard_on_cpus`): accelerate turns a launched run
    into an FSDP run only on accelerators, though FSDP2 (`fully_shard`) runs on the CPUs with gloo.
Training (stave.training.run) and evaluation (stave.evaluation.run) both go through here.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from .errors import StaveError

if TYPE_CHECKING:
    from accelerate import PartialState

logger = logging.getLogger("stave.distributed")


class LaunchError(StaveError, ValueError):
    """The launcher's processes did not form one run of the launcher's size; names what was found and the fix."""


def launched_processes() -> int:
    """How many processes the launcher started in all (WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def accelerator() -> str | None:
    """The accelerator torch sees in this process ("cuda", "mps", "xpu", ...), or None on a CPU-only machine."""
    current = getattr(torch, "accelerator", None)  # torch >= 2.6
    if current is not None:
        device = current.current_accelerator() if current.is_available() else None
        return None if device is None else device.type
    return "cuda" if torch.cuda.is_available() else None


def runs_on_cpu() -> bool:
    """Whether a launched run uses the CPUs: the machine has no accelerator, or the launcher was told so
    (`accelerate launch --cpu` sets ACCELERATE_USE_CPU)."""
    from accelerate.utils import parse_flag_from_env

    return accelerator() is None or parse_flag_from_env("ACCELERATE_USE_CPU")


def training_settings(values: dict[str, Any]) -> dict[str, Any]:
    """TrainingArguments keyword arguments `values`, with use_cpu=True and (unless set) ddp_backend="gloo"
    when a launcher started several processes that run on the CPUs — the only set-up in which the Trainer
    joins them on a CPU machine. Logged when it changes anything."""
    if launched_processes() <= 1 or not runs_on_cpu():
        return values
    chosen = {"use_cpu": True} if not values.get("use_cpu") else {}
    if values.get("ddp_backend") is None:
        chosen["ddp_backend"] = "gloo"
    if chosen:
        settings = ", ".join(f"{k}={v}" for k, v in chosen.items())
        _log_once(f"{launched_processes()} processes launched (WORLD_SIZE) on the CPUs: training with {settings}")
    return {**values, **chosen}


@functools.cache
def _log_once(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":
        logger.info(message)


def process_state() -> PartialState:
    """This process's place in the launched run (accelerate's PartialState: process_index, num_processes,
    device), formed on first use — on the CPUs with gloo where `runs_on_cpu()` — and checked with
    `check_joined`. Without a launcher: one process, on the accelerator if there is one."""
    from accelerate import PartialState

    cpu = launched_processes() > 1 and runs_on_cpu()
    state = PartialState(cpu=cpu, **({"backend": "gloo"} if cpu else {}))
    check_joined(state, fix="accelerate launch --cpu (or ACCELERATE_USE_CPU=true) runs the evaluation on the CPUs.")
    return state


def check_joined(state: PartialState, *, fix: str) -> None:
    """Raise LaunchError when the launcher started WORLD_SIZE > 1 processes and accelerate's `state` holds
    another number of them (each process would run alone); `fix` names the settings that make one run."""
    launched = launched_processes()
    if launched <= 1 or state.num_processes == launched:
        return
    found = accelerator()
    raise LaunchError(
        f"the launcher started {launched} processes (WORLD_SIZE={launched}; this is RANK="
        f"{os.environ.get('RANK', '?')}, LOCAL_RANK={os.environ.get('LOCAL_RANK', '?')}) on a machine with "
        f"{'accelerator ' + found if found else 'no accelerator'}, but accelerate set them up as "
        f"{state.distributed_type} with {state.num_processes} process(es) on {state.device}: each would run "
        f"alone on the same data and write the same folder. {fix}"
    )


@contextmanager
def owned_process_group() -> Iterator[None]:
    """Within: a default process group that starts inside (stave's or the Trainer's) is destroyed at the end,
    after every rank has reached a barrier, and accelerate's state forgets it; one that existed before is left
    to its owner. Also on LaunchError, which every rank raises at the same point; on other errors the group
    is left as it is (other ranks may be past any barrier)."""
    available = torch.distributed.is_available()
    existed = available and torch.distributed.is_initialized()
    try:
        yield
    except LaunchError:
        _destroy(existed)
        raise
    _destroy(existed)


def _destroy(existed: bool) -> None:
    if existed or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return
    from accelerate.state import AcceleratorState

    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    AcceleratorState._reset_state(reset_partial_state=True)  # as TrainingArguments does before its set-up


def fsdp_requested(fsdp_plugin_args: dict[str, Any] | None) -> bool:
    """Whether the run was asked to shard with FSDP: TrainingArguments `fsdp` (its `fsdp_plugin_args`) or an
    `accelerate launch` FSDP configuration (ACCELERATE_USE_FSDP)."""
    from accelerate.utils import parse_flag_from_env

    return fsdp_plugin_args is not None or parse_flag_from_env("ACCELERATE_USE_FSDP")


def shard_on_cpus(state: Any, fsdp_plugin_args: dict[str, Any] | None) -> bool:
    """Make accelerate's AcceleratorState `state` of a run on the CPUs (MULTI_CPU, gloo) an FSDP run, when FSDP
    was asked for; returns whether it did. accelerate's AcceleratorState.__init__ sets DistributedType.FSDP
    only for runs on accelerators (its list MULTI_GPU, MULTI_XPU, ... leaves out MULTI_CPU), so an FSDP
    configuration would train as DDP on the CPUs; FSDP2 shards over gloo just as well. The plugin is the one
    the Trainer or `accelerate launch` would have given (`fsdp_plugin_args`, else the FSDP_* environment);
    FSDP1 is refused (stave shards with FSDP2)."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if state.distributed_type != DistributedType.MULTI_CPU or not fsdp_requested(fsdp_plugin_args):
        return False
    plugin = FullyShardedDataParallelPlugin(**(fsdp_plugin_args or {}))
    if plugin.fsdp_version != 2:
        raise LaunchError(
            f"FSDP version {plugin.fsdp_version} on the CPUs: stave shards with FSDP2 (fsdp_version: 2 in the "
            "accelerate configuration, or training.fsdp_config.version=2)"
        )
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    PartialState._shared_state["distributed_type"] = state.distributed_type  # as AcceleratorState keeps it
    _log_once(f"{launched_processes()} processes on the CPUs: sharding with FSDP2 (gloo)")
    return True
