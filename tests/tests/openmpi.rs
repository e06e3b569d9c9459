//! Open MPI, graze's second MPI flavour: `mpirun` starts its daemons (`orted`) on the other
//! nodes of the allocation through graze's launcher shim (`OMPI_MCA_plm_rsh_agent`), reads the
//! allocation from the host file graze writes (`OMPI_MCA_orte_default_hostfile`), and never
//! uses ssh. The MPI program is a real one, built with Open MPI's `mpicc` (scripts/setup
//! installs openmpi-bin and libopenmpi-dev beside MPICH, which stays the default `mpiexec`).
#![allow(clippy::unwrap_used)]

use graze_tests::*;

const HELLO: &str = r#"
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int mine = rank + 1, sum = 0;
    MPI_Allreduce(&mine, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("rank %d of %d: allreduce sum %d\n", rank, size, sum);
    MPI_Finalize();
    return 0;
}
"#;

#[test]
fn openmpi_job_runs_across_nodes_through_the_shim() {
    let mut c = Cluster::start(&[]);
    c.add_agent("o2", "127.0.0.2", 2, &[]);
    c.add_agent("o3", "127.0.0.3", 2, &[]);
    c.wait_offered(2);
    // Agents report the MPI flavours they found, Open MPI under its Debian name too.
    let mpi = c.node("o2")["info"]["mpi"].clone();
    let kinds: Vec<&str> = mpi
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"mpich") && kinds.contains(&"openmpi"),
        "{mpi}"
    );

    let prog = c.compile_mpi("mpicc.openmpi", "ompi-hello", HELLO);

    // No -n for mpirun: one rank per slot of the allocation graze wrote. The two "nodes" share
    // one machine and host name, and nothing is set by hand: graze gives each node of the job
    // its own TMPDIR (Open MPI's session directory) and, since the node names are not the host
    // name, its own directory for the shared-memory transport's segments.
    let id = c.submit(&["-n", "4", "--", "mpirun.openmpi", &prog]);
    let waited = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    let logs = c.logs(id);
    assert!(waited.status.success(), "{job}\n{logs}");
    assert_eq!(job["state"], "completed", "{job}\n{logs}");
    assert_eq!(job["allocation"].as_array().unwrap().len(), 2, "{job}");
    // Each rank's line is filed under its rank (Open MPI's output tags, read by the agent).
    for r in 0..4 {
        let out = c.graze(&["logs", &id.to_string(), "--rank", &r.to_string()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("rank {r} of 4: allreduce sum 10")),
            "rank {r}'s log:\n{text}\nall:\n{logs}"
        );
    }
}
