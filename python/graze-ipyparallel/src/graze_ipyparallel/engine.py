"""`python -m graze_ipyparallel.engine ARGS`: one ipyparallel engine, one rank of graze's job.

Before running `ipengine ARGS` it sets, for this rank:

- `GRAZE_NODE`: the graze node it runs on, from `GRAZE_RANK_NODES` (the job's node file,
  one node per rank, joined by commas on the job's first node) and the rank (`PMI_RANK`,
  or Open MPI's `OMPI_COMM_WORLD_RANK`); tasks can read it.
- `IPYTHONDIR`: a fresh directory under the temp dir when unset, since the job's user may
  have no home (graze runs jobs as its own user); the controller's connection info comes in
  `$IPP_CONNECTION_INFO`, so no file of the submitting machine is needed.
"""

from __future__ import annotations

import os
import sys
import tempfile


def rank_node(env):
    """The node of this rank, or None."""
    nodes = [n for n in env.get("GRAZE_RANK_NODES", "").split(",") if n]
    rank = env.get("PMI_RANK") or env.get("OMPI_COMM_WORLD_RANK")
    try:
        r = int(rank)
    except (TypeError, ValueError):
        return None
    return nodes[r] if 0 <= r < len(nodes) else None


def prepare(env):
    """Set GRAZE_NODE and IPYTHONDIR in `env` (a dict, e.g. os.environ)."""
    node = rank_node(env)
    if node:
        env["GRAZE_NODE"] = node
    if not env.get("IPYTHONDIR"):
        env["IPYTHONDIR"] = tempfile.mkdtemp(prefix="graze-ipengine-")


def main(argv=None):
    prepare(os.environ)
    args = list(sys.argv[1:] if argv is None else argv)
    from ipyparallel.engine.app import main as ipengine_main

    sys.argv = ["ipengine"] + args
    return ipengine_main()


if __name__ == "__main__":
    sys.exit(main())
