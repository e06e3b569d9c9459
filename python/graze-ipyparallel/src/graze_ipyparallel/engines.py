"""`python -m graze_ipyparallel.engines -n N --profile-dir DIR ...`: what `graze engines` runs.

Uses the profile's running graze cluster (cluster id `graze`) if its controller runs, else
starts a controller (`GrazeControllerLauncher`); then starts N engines as one graze job. Prints
one JSON line on stdout once the engines' job is submitted (`client_file`, `job_id`,
`own_controller`), and on SIGINT or SIGTERM stops what it started: the engines (graze cancels
their job) and, if it started it, the controller. It also ends when the engines' job ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

import ipyparallel as ipp


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m graze_ipyparallel.engines")
    p.add_argument("-n", type=int, required=True, help="number of engines")
    p.add_argument("--profile-dir", required=True)
    p.add_argument("--cluster-id", default="graze")
    p.add_argument("--group", action="append", default=[], help="node group (repeatable)")
    p.add_argument("--nodes", action="append", default=[], help="node (repeatable)")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--on-owner", choices=["wait", "requeue"], default="wait")
    a = p.parse_args(argv)
    if a.n < 1:
        p.error(f"-n must be at least 1, got {a.n}")
    return a


def running_cluster(profile_dir, cluster_id):
    """The profile's cluster with a running controller, or None."""
    try:
        c = ipp.Cluster.from_file(profile_dir=profile_dir, cluster_id=cluster_id)
    except Exception:
        return None
    if c.controller is None or not c.controller.running:
        return None
    return c


async def run(a):
    os.makedirs(a.profile_dir, exist_ok=True)
    cluster = running_cluster(a.profile_dir, a.cluster_id)
    own = cluster is None
    if own:
        cluster = ipp.Cluster(
            profile_dir=a.profile_dir,
            cluster_id=a.cluster_id,
            controller="graze",
            engines="graze",
        )
        if a.on_owner == "requeue":
            # Requeued engines die without unregistering: drop them soon (ipyparallel's
            # 30 s), so their tasks are retried on the replacements.
            cluster.config.GrazeControllerLauncher.heartbeat_tolerance = 30.0
        await cluster.start_controller()
    else:
        cluster.engine_launcher_class = "graze"
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    esid = None
    try:
        esid = await cluster.start_engines(
            a.n,
            groups=a.group,
            nodes=a.nodes,
            priority=a.priority,
            on_owner=a.on_owner,
        )
        engines = cluster.engines[esid]
        engines.on_stop(lambda data: loop.call_soon_threadsafe(done.set))
        client_file = os.path.join(
            a.profile_dir, "security", f"ipcontroller-{a.cluster_id}-client.json"
        )
        print(
            json.dumps(
                {"client_file": client_file, "job_id": engines.job_id, "own_controller": own}
            ),
            flush=True,
        )
        await done.wait()
    finally:
        if esid is not None and esid in cluster.engines:
            if cluster.engines[esid].state != "after":
                await cluster.stop_engines(esid)
        if own:
            await cluster.stop_controller()
    return 0


def main(argv=None):
    return asyncio.run(run(parse(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
