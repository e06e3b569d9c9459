"""GrazeCluster's job script and submit command (no workers started)."""

import pytest

pytest.importorskip("dask_jobqueue")

from graze_ipyparallel.dask import GrazeCluster  # noqa: E402


def test_one_graze_job_of_single_threaded_workers():
    cluster = GrazeCluster(
        cores=4, memory="4GB", groups=["lab"], priority=2, access="/a.toml",
        scheduler_options={"dashboard_address": None},
    )
    try:
        job = cluster.job_cls(
            scheduler="tcp://10.0.0.1:8786", name="w", cores=4, memory="4GB",
            groups=["lab"], priority=2, access="/a.toml",
        )
        script = job.job_script()
        assert "exec mpiexec sh -c" in script
        assert 'GRAZE_RANK_NODES=$(paste -sd, "$GRAZE_NODEFILE")' in script
        assert "export GRAZE_NODE && exec " in script
        assert "--name w-$PMI_RANK" in script
        assert "--nthreads 1" in script and "--nworkers" not in script
        assert "tcp://10.0.0.1:8786" in script
        args = job.submit_args(script)
        assert args[:5] == ["graze", "--access", "/a.toml", "submit", "--parsable"]
        assert args[5:7] == ["-n", "4"]
        assert args[args.index("--group") + 1] == "lab"
        assert args[args.index("--priority") + 1] == "2"
        assert args[-4:-1] == ["--", "sh", "-c"] and args[-1] == script
        assert job.cancel_command == "graze --access /a.toml cancel"
    finally:
        cluster.close()
