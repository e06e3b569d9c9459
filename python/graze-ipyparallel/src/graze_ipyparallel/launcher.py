"""ipyparallel launchers for graze.

`GrazeEngineSetLauncher` (entry point `graze` in `ipyparallel.engine_launchers`) starts n
engines as ONE graze job: `graze submit -n N -- sh -c SCRIPT`, where SCRIPT runs a plain
`mpiexec` (graze gives it the allocation, one rank per core, its agents are hydra's launcher)
over `python -m graze_ipyparallel.engine`. The controller's connection info travels in the
job's environment (`IPP_CONNECTION_INFO`, hydra passes it to every rank), never as a path:
the PCs share no file system with the submitting machine.

`GrazeControllerLauncher` (entry point `graze` in `ipyparallel.controller_launchers`) is
ipyparallel's local controller, listening on every interface, with a heartbeat tolerance
that outlasts an owner's visit (see `heartbeat_tolerance`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import threading
import time

from ipyparallel.cluster.launcher import (
    BatchEngineSetLauncher,
    LauncherError,
    LocalControllerLauncher,
    NotRunning,
)
from traitlets import Any, Bool, CaselessStrEnum, Float, Integer, List, Unicode, default

#: graze job states after which the job never runs again (`JobState::is_final`).
FINAL_STATES = frozenset(
    {"completed", "failed", "cancelled", "timeout", "dependency-failed", "dependency_failed"}
)

#: The heartbeat tolerance when graze cannot tell the nodes' owner policy: 15 min.
DEFAULT_TOLERANCE_S = 15 * 60


def graze_base(graze_cmd, access):
    """The `graze` command line prefix: the command, then `--access FILE` when given."""
    base = list(graze_cmd)
    if access:
        base += ["--access", access]
    return base


def owner_tolerance_s(nodes_json, margin_s=60.0):
    """Seconds an engine may be suspended by graze before the controller drops it.

    The longest a job stays suspended for an owner is the node's `vacate_after` (then it is
    vacated and requeued), plus `vacate_grace` until it is gone; `margin_s` is added for the
    scheduler's round trips. Nodes without a policy count as graze's defaults (10 min, 10 s).
    """
    longest = 0.0
    for node in nodes_json or []:
        policy = (node.get("info") or {}).get("policy") or {}
        vacate = policy.get("vacate_after_ms", 600_000)
        grace = policy.get("vacate_grace_ms", 10_000)
        longest = max(longest, (vacate + grace) / 1000.0)
    if longest == 0.0:
        return float(DEFAULT_TOLERANCE_S)
    return longest + margin_s


def heartbeat_misses(tolerance_s, period_ms=3000):
    """`HeartMonitor.max_heartmonitor_misses` for a tolerance in seconds, at least the default 10."""
    return max(10, math.ceil(tolerance_s * 1000.0 / period_ms))


def loopback_only(connection_info_json):
    """True when the controller's connection info names a loopback interface."""
    try:
        interface = json.loads(connection_info_json).get("interface", "")
    except (ValueError, AttributeError):
        return False
    host = interface.split("://", 1)[-1]
    return host.startswith("127.") or host in ("localhost", "::1", "[::1]")


def job_state(show_json):
    """The state string of `graze show ID --json`, lower case (`running`, `suspended`, ...)."""
    state = show_json.get("state")
    if isinstance(state, dict):  # tolerate a tagged form
        state = state.get("state")
    return str(state or "").lower()


def exit_code(show_json):
    """An ended job's exit code for ipyparallel's stop data (0 when it completed)."""
    state = job_state(show_json)
    ex = show_json.get("exit")
    if isinstance(ex, dict):
        for key in ("code", "exit_code"):
            if isinstance(ex.get(key), int):
                return ex[key]
        if isinstance(ex.get("signal"), int):
            return -ex["signal"]
    elif isinstance(ex, int):
        return ex
    return 0 if state == "completed" else 1


class GrazeEngineSetLauncher(BatchEngineSetLauncher):
    """Start n ipyparallel engines as one graze job."""

    entrypoint_name = "graze"

    graze_cmd = List(
        Unicode(), ["graze"], config=True, help="The graze command ['graze']."
    ).tag(to_dict=True)
    access = Unicode(
        "",
        config=True,
        help="The graze access file [default: $GRAZE_ACCESS, else graze's own default].",
    ).tag(to_dict=True)
    groups = List(Unicode(), config=True, help="Only nodes in all of these groups.")
    nodes = List(Unicode(), config=True, help="Only these nodes.")
    priority = Integer(0, config=True, help="The job's priority (higher runs first).")
    job_name = Unicode("", config=True, help="The graze job's name [ipengine-CLUSTER_ID].")
    extra_submit_args = List(
        Unicode(), config=True, help="More `graze submit` arguments, e.g. ['--time', '8h']."
    )
    on_owner = CaselessStrEnum(
        ["wait", "requeue"],
        "wait",
        config=True,
        help="""What the engines do when a PC's owner returns. graze suspends (SIGSTOPs) the
        whole job on every node at once. 'wait': leave it suspended; it resumes when the
        owner has left for resume_after, or graze vacates and requeues it after vacate_after
        (the controller must tolerate that: use --controller=graze). 'requeue': after
        requeue_after seconds suspended, `graze requeue` the job: the engines are killed, the
        job starts again elsewhere (avoiding that PC) with new engines, and tasks of the old
        engines fail with EngineError (a load-balanced view with retries=N resubmits them).""",
    ).tag(to_dict=True)
    requeue_after = Float(
        5.0, config=True, help="With on_owner='requeue': seconds suspended before requeueing."
    ).tag(to_dict=True)
    poll_interval = Float(
        2.0, config=True, help="Seconds between `graze show` polls of the engines' job."
    ).tag(to_dict=True)
    mpiexec = Unicode("mpiexec", config=True, help="The MPI launcher graze's job runs.")
    forward_env = List(
        Unicode(),
        [],
        config=True,
        help="Names of variables of this environment to pass on to the engines.",
    )

    engine_cmd = List(
        [sys.executable, "-m", "graze_ipyparallel.engine"],
        config=True,
        help="The engine command on the nodes (the same Python path must exist on every PC).",
    )

    batch_file_name = Unicode("graze_engines.sh", config=True).tag(to_dict=True)
    default_template = Unicode(
        """#!/bin/sh
# {n} ipyparallel engines, one per allocated core; graze's mpiexec finds the allocation.
GRAZE_RANK_NODES=$(paste -sd, "$GRAZE_NODEFILE")
export GRAZE_RANK_NODES
exec {mpiexec} {program_and_args}
"""
    )
    job_id_regexp = Any(re.compile(r"^\s*(\d+)\s*$", re.M))
    job_id_regexp_group = Integer(1)

    _poller = Any(None)
    _stopping = Bool(False)
    suspended_since = Any(None)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.context["mpiexec"] = self.mpiexec

    @default("access")
    def _default_access(self):
        return os.environ.get("GRAZE_ACCESS", "")

    # -- commands ----------------------------------------------------------------------

    def graze(self, *args):
        return graze_base(self.graze_cmd, self.access) + list(args)

    def engine_env(self):
        """The environment the engines need, passed with `graze submit --env`."""
        env = {}
        info = self.environment.get("IPP_CONNECTION_INFO")
        if not info:
            path = self.connection_files["engine"]
            try:
                with open(path) as f:
                    info = json.dumps(json.load(f))
            except OSError as e:
                raise LauncherError(
                    f"no controller connection info: $IPP_CONNECTION_INFO unset and {path}: {e}"
                ) from e
        env["IPP_CONNECTION_INFO"] = info
        if loopback_only(info):
            self.log.warning(
                "the controller listens on a loopback address only (%s): engines on other "
                "PCs cannot reach it; use --controller=graze (every interface) or "
                "--IPController.ip=ADDRESS",
                json.loads(info).get("interface"),
            )
        if self.cluster_id:
            env["IPP_CLUSTER_ID"] = self.cluster_id
        for name in self.forward_env:
            if name in os.environ:
                env[name] = os.environ[name]
        for k, v in self.environment.items():
            # IPP_PROFILE_DIR names a directory of this machine only.
            if k not in ("IPP_CONNECTION_INFO", "IPP_PROFILE_DIR"):
                env[k] = v
        return env

    def submit_args(self, n, script):
        """The whole `graze submit` command line for n engines running `script`."""
        args = ["submit", "--parsable", "-n", str(n)]
        args += ["--name", self.job_name or f"ipengine-{self.cluster_id or 'ipp'}"]
        if self.groups:
            args += ["--group", ",".join(self.groups)]
        if self.nodes:
            args += ["--nodes", ",".join(self.nodes)]
        if self.priority:
            args += ["--priority", str(self.priority)]
        for k, v in sorted(self.engine_env().items()):
            args += ["--env", f"{k}={v}"]
        args += list(self.extra_submit_args)
        args += ["--", "sh", "-c", script]
        return self.graze(*args)

    def show(self):
        """`graze show JOB --json`, parsed."""
        out = subprocess.run(
            self.graze("show", str(self.job_id), "--json"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise LauncherError(f"graze show {self.job_id}: {out.stderr.strip()}")
        return json.loads(out.stdout)

    # -- the launcher protocol ---------------------------------------------------------

    def find_args(self):
        return self.graze("submit")

    def start(self, n=1):
        """Submit the engines' job; returns its id. Ends are noticed by polling `graze show`."""
        # The script is passed in the submit command; a copy is kept beside the profile's
        # logs (never in the current directory, where ipcluster's work_dir points).
        if self.profile_dir:
            log_dir = os.path.join(self.profile_dir, "log")
            os.makedirs(log_dir, exist_ok=True)
            self.batch_file = os.path.join(log_dir, f"{self.identifier}.graze.sh")
        self.write_batch_script(n)
        with open(self.batch_file) as f:
            script = f.read()
        self.log.info(
            "Submitting %i engines to graze%s", n, f" ({self.access})" if self.access else ""
        )
        cmd = self.submit_args(n, script)
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if out.returncode != 0:
            raise LauncherError(
                f"graze submit failed ({out.returncode}): {out.stderr.strip() or out.stdout}"
            )
        job_id = self.parse_job_id(out.stdout)
        self.notify_start(job_id)
        self._watch()
        return job_id

    @classmethod
    def from_dict(cls, d, **kwargs):
        launcher = super().from_dict(d, **kwargs)
        if not launcher.job_id:
            raise NotRunning("no graze job id")
        try:
            view = launcher.show()
        except (LauncherError, ValueError) as e:
            raise NotRunning(f"graze job {launcher.job_id}: {e}") from e
        if job_state(view) in FINAL_STATES:
            raise NotRunning(f"graze job {launcher.job_id} ended ({job_state(view)})")
        launcher.state = "running"
        launcher._watch()
        return launcher

    def _watch(self):
        # The loop is looked up here, in the loop's thread: looked up first in the poller's
        # thread, IOLoop.current() would make a new loop there that never runs.
        loop = self.loop
        self._poller = threading.Thread(
            target=self._poll_loop, args=(loop,), name=f"graze-job-{self.job_id}", daemon=True
        )
        self._poller.start()

    def _poll_loop(self, loop):
        failures = 0
        while self.state == "running":
            try:
                view = self.show()
                failures = 0
            except (LauncherError, ValueError, OSError) as e:
                failures += 1
                if failures in (1, 10) or failures % 60 == 0:
                    self.log.warning("graze job %s: %s", self.job_id, e)
                time.sleep(self.poll_interval)
                continue
            state = job_state(view)
            if state in FINAL_STATES:
                data = dict(job_id=self.job_id, state=state, exit_code=exit_code(view))
                loop.add_callback(self.notify_stop, data)
                return
            self.on_state(state, time.monotonic())
            time.sleep(self.poll_interval)

    def on_state(self, state, now):
        """Act on the job's state: log suspensions and, with on_owner='requeue', requeue."""
        if state != "suspended":
            if self.suspended_since is not None:
                self.log.info("graze job %s: %s again", self.job_id, state)
            self.suspended_since = None
            return None
        if self.suspended_since is None:
            self.suspended_since = now
            self.log.warning(
                "graze job %s suspended: an owner is back on one of its PCs; "
                "every engine is stopped until it resumes (on_owner=%s)",
                self.job_id,
                self.on_owner,
            )
        if self.on_owner == "requeue" and now - self.suspended_since >= self.requeue_after:
            self.log.warning("graze job %s: requeueing its engines", self.job_id)
            out = subprocess.run(
                self.graze("requeue", str(self.job_id)),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                self.log.warning("graze requeue %s: %s", self.job_id, out.stderr.strip())
            self.suspended_since = None
            return "requeued"
        return None

    def stop(self):
        """Cancel the job (graze kills every engine on every node) and wait until it ended."""
        if self.state == "after" or not self.job_id:
            return None
        out = subprocess.run(
            self.graze("cancel", str(self.job_id)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        deadline = time.monotonic() + self.stop_timeout
        view = {}
        while time.monotonic() < deadline:
            try:
                view = self.show()
            except (LauncherError, ValueError):
                break
            if job_state(view) in FINAL_STATES:
                break
            time.sleep(0.2)
        data = dict(
            job_id=self.job_id,
            state=job_state(view) if view else "unknown",
            output=out.stdout + out.stderr,
        )
        self.notify_stop(data)
        return data

    def signal(self, sig):
        raise NotImplementedError("graze signals jobs only at time limits; use stop()")

    def poll(self):
        """None while the job may still run, else its exit code."""
        if self.state != "after":
            return None
        return (self.stop_data or {}).get("exit_code", 0)


class GrazeControllerLauncher(LocalControllerLauncher):
    """ipyparallel's local controller, set up for engines on graze nodes.

    It listens on `ip` (every interface by default: the engines run on other PCs), and the
    heart monitor tolerates `heartbeat_tolerance` seconds of silence: graze SIGSTOPs a job's
    engines while a PC's owner is back, for at most the nodes' `vacate_after` (then the job is
    requeued), and the default tolerance (10 misses x 3 s) would unregister every engine of the
    job after 30 s and fail their tasks.
    """

    entrypoint_name = "graze"

    ip = Unicode("*", config=True, help="Interface the controller listens on ['*': all].")
    heartbeat_tolerance = Float(
        0.0,
        config=True,
        help="""Seconds an engine may be silent (suspended) before the controller drops it.
        0 (default): the longest `vacate_after + vacate_grace` of the graze nodes plus 60 s
        (`graze nodes --json`), or 15 min when graze cannot be asked.""",
    )
    heartbeat_period = Integer(3000, config=True, help="HeartMonitor.period in ms.")
    graze_cmd = List(Unicode(), ["graze"], config=True, help="The graze command ['graze'].")
    access = Unicode("", config=True, help="The graze access file [default: $GRAZE_ACCESS].")

    @default("access")
    def _default_access(self):
        return os.environ.get("GRAZE_ACCESS", "")

    def tolerance(self):
        if self.heartbeat_tolerance > 0:
            return self.heartbeat_tolerance
        try:
            out = subprocess.run(
                graze_base(self.graze_cmd, self.access) + ["nodes", "--json"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if out.returncode == 0:
                return owner_tolerance_s(json.loads(out.stdout))
            self.log.warning("graze nodes: %s", out.stderr.strip())
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            self.log.warning("graze nodes: %s", e)
        return float(DEFAULT_TOLERANCE_S)

    def find_args(self):
        tol = self.tolerance()
        extra = [
            f"--HeartMonitor.period={self.heartbeat_period}",
            f"--HeartMonitor.max_heartmonitor_misses={heartbeat_misses(tol, self.heartbeat_period)}",
        ]
        if self.ip and not any(a.startswith("--ip") for a in self.controller_args):
            extra.append(f"--ip={self.ip}")
        return self.controller_cmd + self.cluster_args + extra + self.controller_args


def shell_words(cmd):
    """A command line as one shell string (for logs and templates)."""
    return " ".join(shlex.quote(w) for w in cmd)
