"""Dask workers on graze: `GrazeCluster`, a dask-jobqueue `JobQueueCluster`.

    from graze_ipyparallel.dask import GrazeCluster
    cluster = GrazeCluster(cores=4, memory="8GB", groups=["lab"])
    cluster.scale(jobs=2)          # two graze jobs of 4 single-threaded workers each
    client = distributed.Client(cluster)

Each dask-jobqueue "job" is one graze job of `cores` ranks: a plain `mpiexec` starts one
single-threaded worker per allocated core (graze may spread them over several PCs), named
`NAME-RANK` as dask's `--nworkers` would. The job script travels in the submit command
(`sh -c SCRIPT`), not as a file: the PCs share no file system with this machine. When a PC's
owner returns graze suspends the whole job; Dask's scheduler then sees its workers go silent
and, after its own timeouts, reschedules their tasks on other workers (Dask recomputes lost
results), so no task is lost but stopped workers' work is redone.
"""

from __future__ import annotations

import os
import shlex

import dask
from dask_jobqueue.core import Job, JobQueueCluster, job_parameters

dask.config.update_defaults(
    {
        "jobqueue": {
            "graze": {
                "name": "dask-worker",
                "cores": None,
                "memory": None,
                "processes": None,
                "python": None,
                "interface": None,
                "death-timeout": 60,
                "local-directory": None,
                "shared-temp-directory": None,
                "extra": None,
                "worker-command": "distributed.cli.dask_worker",
                "worker-extra-args": [],
                "shebang": "#!/bin/sh",
                "env-extra": None,
                "job-script-prologue": [],
                "job-extra": None,
                "job-extra-directives": [],
                "job-directives-skip": [],
                "log-directory": None,
                "scheduler-options": {},
                "graze": "graze",
                "groups": [],
                "nodes": [],
                "priority": 0,
                "access": None,
            }
        }
    }
)


class GrazeJob(Job):
    """One graze job of `cores` single-threaded Dask workers."""

    config_name = "graze"
    cancel_command = "graze cancel"

    def __init__(
        self,
        scheduler=None,
        name=None,
        config_name=None,
        groups=None,
        nodes=None,
        priority=None,
        access=None,
        graze=None,
        **base_class_kwargs,
    ):
        cores = base_class_kwargs.get("cores") or dask.config.get("jobqueue.graze.cores")
        # one worker process per core, one thread each: one graze rank each
        base_class_kwargs.setdefault("processes", cores)
        super().__init__(
            scheduler=scheduler, name=name, config_name=config_name, **base_class_kwargs
        )
        cfg = lambda k: dask.config.get(f"jobqueue.{self.config_name}.{k}")  # noqa: E731
        self.graze = shlex.split(graze or cfg("graze"))
        self.groups = list(groups if groups is not None else cfg("groups"))
        self.nodes = list(nodes if nodes is not None else cfg("nodes"))
        self.priority = int(priority if priority is not None else cfg("priority"))
        self.access = access or cfg("access") or os.environ.get("GRAZE_ACCESS")
        base = self.graze + (["--access", self.access] if self.access else [])
        self.cancel_command = shlex.join(base + ["cancel"])
        # every rank is one worker, `--nworkers` is replaced by the ranks
        self._command_template = (
            self._command_template.replace(f" --nworkers {self.worker_processes}", "")
            .replace(f"--name {name}", f"--name {name}-$PMI_RANK")
            .replace(
                f"--nthreads {self.worker_process_threads}", "--nthreads 1"
            )
        )
        self.job_header = ""

    def job_script(self):
        # One worker per rank; each learns its node (GRAZE_NODE) from the job's node file,
        # read on the first node and passed on by mpiexec in GRAZE_RANK_NODES.
        per_rank = (
            'GRAZE_NODE=$(echo "$GRAZE_RANK_NODES" | cut -d, -f$((PMI_RANK + 1))) '
            "&& export GRAZE_NODE && exec " + self._command_template
        )
        run = (
            'GRAZE_RANK_NODES=$(paste -sd, "$GRAZE_NODEFILE")\n'
            "export GRAZE_RANK_NODES\n"
            "exec mpiexec sh -c " + shlex.quote(per_rank)
        )
        return super().job_script().replace(self._command_template, run)

    def submit_args(self, script):
        base = self.graze + (["--access", self.access] if self.access else [])
        args = base + ["submit", "--parsable", "-n", str(self.worker_processes)]
        args += ["--name", self.job_name or "dask-worker"]
        if self.groups:
            args += ["--group", ",".join(self.groups)]
        if self.nodes:
            args += ["--nodes", ",".join(self.nodes)]
        if self.priority:
            args += ["--priority", str(self.priority)]
        return args + ["--", "sh", "-c", script]

    async def _submit_job(self, script_filename):
        with open(script_filename) as f:
            script = f.read()
        return await self._call(self.submit_args(script))


class GrazeCluster(JobQueueCluster):
    __doc__ = f"""Dask workers as graze jobs (one single-threaded worker per core).

    Parameters
    ----------
    groups : list of str
        Only nodes in all of these graze groups.
    nodes : list of str
        Only these nodes.
    priority : int
        The jobs' priority.
    access : str
        The graze access file [default: $GRAZE_ACCESS].
    graze : str
        The graze command ['graze'].
{job_parameters}
    """

    job_cls = GrazeJob
