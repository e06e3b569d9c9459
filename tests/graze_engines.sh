#!/bin/sh
# 2 ipyparallel engines, one per allocated core; graze's mpiexec finds the allocation.
GRAZE_RANK_NODES=$(paste -sd, "$GRAZE_NODEFILE")
export GRAZE_RANK_NODES
exec mpiexec /work/wt-ipp/target/ipp-venv/bin/python -m graze_ipyparallel.engine
