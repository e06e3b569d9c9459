#!/usr/bin/env python3
"""The classic mpi4py Monte-Carlo Pi, extended to checkpoint through graze's protocol.

Run it under graze with checkpoints on:

    graze submit --checkpoint -n 4 -- mpiexec python3 pi_checkpoint.py --seed 1 --min-rounds 400

What it takes (the lines marked CHECKPOINT are all that is added to the original):
  * GRAZE_CHECKPOINT_DIR: rank r keeps its state in $GRAZE_CHECKPOINT_DIR/r/state.pickle and
    creates the empty $GRAZE_CHECKPOINT_DIR/r.done when the state is on disk;
  * GRAZE_CHECKPOINT_SIGNAL: the signal (a number) that asks for a checkpoint; the handler only
    sets a flag, and all ranks save after the same round (an Allreduce of the flag);
  * a restored run finds its state file and goes on from there: same rounds, same final Pi as an
    uninterrupted run with the same --seed;
  * --checkpoint-exit: stop with exit code 85 after saving ("checkpointed": graze requeues the
    job and restores it on the next run).
Without GRAZE_CHECKPOINT_DIR it is the original program.
"""
import argparse
import os
import pickle
import random
import signal
import sys

from mpi4py import MPI

# TRACE: under `graze submit --trace` graze puts its helper on PYTHONPATH and the sampling
# shows as a "sample" region on each rank's timeline; elsewhere it does nothing.
try:
    import graze_trace
    sample_region = graze_trace.region
except ImportError:
    import contextlib

    def sample_region(_name):
        return contextlib.nullcontext()

EXIT_CHECKPOINTED = 85  # CHECKPOINT


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100000)
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.add_argument("--min-rounds", type=int, default=2)
    p.add_argument("--max-rounds", type=int, default=1000)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checkpoint-exit", action="store_true")  # CHECKPOINT
    args = p.parse_args()

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    seed = comm.bcast(args.seed if args.seed is not None else random.randrange(2**63), root=0)
    rng = random.Random(seed * 1000003 + rank)
    pi, rounds = 0.0, 0

    # CHECKPOINT: where this rank's state lives, and the signal that asks for it.
    ckdir = os.environ.get("GRAZE_CHECKPOINT_DIR")
    asked = [False]
    if ckdir:
        signal.signal(int(os.environ.get("GRAZE_CHECKPOINT_SIGNAL", signal.SIGUSR1)),
                      lambda *_: asked.__setitem__(0, True))
        state_path = os.path.join(ckdir, str(rank), "state.pickle")
        state = None
        if os.path.exists(state_path):
            with open(state_path, "rb") as f:
                state = pickle.load(f)
        # Go on only if every rank has a state of the same round.
        have = comm.allgather(state["rounds"] if state else None)
        if state and len(set(have)) == 1:
            pi, rounds = state["pi"], state["rounds"]
            rng.setstate(state["rng"])
            if rank == 0:
                print("resumed from checkpoint after round %d (restart %s)"
                      % (rounds, os.environ.get("GRAZE_RESTART_COUNT", "?")), flush=True)

    while True:
        inside = 0
        with sample_region("sample"):
            for _ in range(args.samples):
                x, y = rng.random(), rng.random()
                if x * x + y * y < 1.0:
                    inside += 1
        oldpi = pi
        # Integer counts, so the sum (and the stop decision) is the same on every rank.
        total = comm.allreduce(inside, op=MPI.SUM)
        pi = (4.0 / size) * (total / args.samples)
        rounds += 1
        delta = abs(pi - oldpi)
        if rank == 0:
            print("pi: %f - delta: %f" % (pi, delta), flush=True)
        if (rounds >= args.min_rounds and delta < args.tolerance) or rounds >= args.max_rounds:
            break
        # CHECKPOINT: any rank's signal makes all ranks save after this round.
        if ckdir and comm.allreduce(asked[0], op=MPI.LOR):
            asked[0] = False
            rank_dir = os.path.join(ckdir, str(rank))
            os.makedirs(rank_dir, exist_ok=True)
            tmp = state_path + ".tmp"
            with open(tmp, "wb") as f:
                pickle.dump({"pi": pi, "rounds": rounds, "rng": rng.getstate()}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, state_path)
            open(os.path.join(ckdir, "%d.done" % rank), "w").close()  # the marker, last
            if rank == 0:
                print("checkpoint saved after round %d" % rounds, flush=True)
            if args.checkpoint_exit:
                comm.Barrier()
                sys.exit(EXIT_CHECKPOINTED)

    if rank == 0:
        print("Computed value of pi on %d processors is %f" % (size, pi), flush=True)


if __name__ == "__main__":
    main()
