"""Map the environment of a SLURM (or submitit-local) task onto what torch.distributed reads.

torchrun and ``accelerate launch`` export RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT for every process they start. Under SLURM (``srun``, or hydra-submitit-launcher
which submits through it) each task is started by SLURM itself, which exports its own names
instead (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, a compressed node list, ...);
submitit's local executor (``hydra/launcher=local``) exports SUBMITIT_LOCAL_* names.
Translating them lets one training entry point run unchanged under every launcher.

Only tasks of a job step (``srun``) are mapped: a plain ``python`` started by the batch script
also sees SLURM_NTASKS of the whole allocation and would otherwise wait forever for peers
nobody started. A process started by torchrun / accelerate (RANK or LOCAL_RANK already set)
is never touched, so ``srun torchrun ...`` works too.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, MutableMapping

# Below the Linux ephemeral range (32768+), so a port picked for a job does not collide with
# the client side of ordinary connections on the head node.
PORT_BASE = 20000
PORT_SPAN = 10000

_TORCH_VARS = ("RANK", "LOCAL_RANK")


class SlurmEnvError(ValueError):
    """A SLURM variable has a form this module does not understand."""


def _split_top_level(spec: str) -> list[str]:
    """Split on commas that are not inside brackets: ``a[1,2],b`` -> [``a[1,2]``, ``b``]."""
    parts, depth, current = [], 0, []
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise SlurmEnvError(f"unbalanced brackets in host list {spec!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise SlurmEnvError(f"unbalanced brackets in host list {spec!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _expand_range(body: str, spec: str) -> list[str]:
    """``01-03,7`` -> [``01``, ``02``, ``03``, ``7``]; zero padding follows the first bound."""
    out = []
    for item in body.split(","):
        lo, sep, hi = item.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise SlurmEnvError(f"bad range {item!r} in host list {spec!r}")
        if not sep:
            out.append(lo)
            continue
        if int(hi) < int(lo):
            raise SlurmEnvError(f"descending range {item!r} in host list {spec!r}")
        out.extend(str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1))
    return out


def expand_hostlist(spec: str) -> list[str]:
    """Expand a SLURM host list (``gpu[001-003,007],login1``) into host names, in order.

    Several bracket groups in one name (``r[1-2]n[1-2]``) expand as a product, last group
    fastest, as ``scontrol show hostnames`` does.
    """
    hosts: list[str] = []
    for part in _split_top_level(spec):
        pieces = re.split(r"(\[[^\]]*\])", part)
        choices = [_expand_range(p[1:-1], spec) if p.startswith("[") else [p] for p in pieces]
        hosts.extend("".join(combo) for combo in itertools.product(*choices))
    if not hosts:
        raise SlurmEnvError(f"empty host list {spec!r}")
    return hosts


def expand_tasks_per_node(spec: str) -> list[int]:
    """``4(x2),3`` -> [4, 4, 3]: SLURM's run-length form of tasks per node."""
    counts: list[int] = []
    for item in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", item)
        if m is None:
            raise SlurmEnvError(f"bad tasks-per-node entry {item!r} in {spec!r}")
        counts.extend([int(m.group(1))] * int(m.group(2) or 1))
    return counts


def job_port(job_id: str) -> int:
    """A rendezvous port that every task of a job derives alike and that differs between jobs."""
    digits = re.sub(r"\D", "", job_id)
    return PORT_BASE + (int(digits) % PORT_SPAN if digits else 0)


def slurm_to_torch_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The torch.distributed variables this SLURM task needs, or {} when there is nothing to do.

    Nothing is returned outside an ``srun`` step, for a one-task step, or when a torch
    launcher has already set RANK / LOCAL_RANK. MASTER_ADDR and MASTER_PORT already in the
    environment win over the derived ones.
    """
    if any(v in environ for v in _TORCH_VARS) or "SLURM_PROCID" not in environ:
        return {}
    world = environ.get("SLURM_STEP_NUM_TASKS")
    if world is None or int(world) <= 1:
        return {}
    node_id = int(environ.get("SLURM_NODEID", "0"))
    per_node = expand_tasks_per_node(
        environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE") or world
    )
    if node_id >= len(per_node):
        raise SlurmEnvError(f"SLURM_NODEID={node_id} but tasks per node lists only {len(per_node)} nodes")
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        raise SlurmEnvError("no SLURM_STEP_NODELIST / SLURM_JOB_NODELIST to find the rendezvous host in")
    env = {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": world,
        "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
        "LOCAL_WORLD_SIZE": str(per_node[node_id]),
        "NODE_RANK": str(node_id),
        "GROUP_RANK": str(node_id),
        "MASTER_ADDR": environ.get("MASTER_ADDR") or expand_hostlist(nodelist)[0],
        "MASTER_PORT": environ.get("MASTER_PORT") or str(job_port(environ.get("SLURM_JOB_ID", ""))),
    }
    if int(env["RANK"]) >= int(world):
        raise SlurmEnvError(f"SLURM_PROCID={env['RANK']} is not below SLURM_STEP_NUM_TASKS={world}")
    return env


def submitit_local_to_torch_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The same mapping for the tasks that submitit's local executor starts on this machine."""
    if any(v in environ for v in _TORCH_VARS) or "SUBMITIT_LOCAL_GLOBALID" not in environ:
        return {}
    world = environ.get("SUBMITIT_LOCAL_NTASKS", "1")
    if int(world) <= 1:
        return {}
    return {
        "RANK": environ["SUBMITIT_LOCAL_GLOBALID"],
        "WORLD_SIZE": world,
        "LOCAL_RANK": environ.get("SUBMITIT_LOCAL_LOCALID", environ["SUBMITIT_LOCAL_GLOBALID"]),
        "LOCAL_WORLD_SIZE": world,
        "NODE_RANK": "0",
        "GROUP_RANK": "0",
        "MASTER_ADDR": environ.get("MASTER_ADDR") or "127.0.0.1",
        "MASTER_PORT": environ.get("MASTER_PORT") or str(job_port(environ.get("SUBMITIT_LOCAL_JOB_ID", ""))),
    }


def apply_slurm_env(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Export the SLURM or submitit-local mapping into `environ` (default: this process's).

    Must run before torch.distributed / accelerate is initialised; returns what was set.
    """
    environ = os.environ if environ is None else environ
    env = slurm_to_torch_env(environ) or submitit_local_to_torch_env(environ)
    environ.update(env)
    return env
