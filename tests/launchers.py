"""Starting a command in 2 processes with the launchers users use (torchrun, accelerate launch with
configs/accelerate/ddp.yaml, fsdp.yaml or the DeepSpeed ones), on 127.0.0.1 and a free port, with no other settings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"],
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(ROOT / "configs/accelerate/ddp.yaml"), "--num_processes", "2", "--mixed_precision", "no",
                   "--main_process_ip", "127.0.0.1"],
}  # fmt: skip
for _name, _config in [("fsdp", "fsdp"), ("zero2", "deepspeed-zero2"), ("zero3", "deepspeed-zero3")]:
    LAUNCHERS[f"accelerate-{_name}"] = [*LAUNCHERS["accelerate"][:4], str(ROOT / f"configs/accelerate/{_config}.yaml"),
                                        *LAUNCHERS["accelerate"][5:]]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: str, *command: str, **env: str) -> subprocess.CompletedProcess:
    """`python *command` in 2 processes started by `launcher` (a key of LAUNCHERS); `env` added."""
    port = ["--master-port" if launcher == "torchrun" else "--main_process_port", str(free_port())]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [*LAUNCHERS[launcher], *port, *command], capture_output=True, text=True, env=env, timeout=240
    )


# A command line whose process pretends to see an accelerator that accelerate cannot run several processes
# on together (as on a machine where the launcher's processes would not join): python UNJOINED <stave args>
UNJOINED = """
import sys
import stave.distributed
stave.distributed.accelerator = lambda: "mps"
from stave.cli import main
sys.exit(main(sys.argv[1:]))
"""
