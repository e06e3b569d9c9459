//! Whole lines, whatever the program writes: hydra's `-prepend-pattern` labels each write of a
//! rank, not each line, and mpiexec passes the pieces of all ranks on as they come. A real
//! MPICH program on two nodes writes every line in three pieces with a pause between them,
//! on stdout and on stderr, while its other ranks do the same; `graze logs --rank R` must
//! show each line whole, once, labelled once, under its own rank.
#![allow(clippy::unwrap_used)]

use graze_tests::*;

const PIECES: &str = r#"
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void put(int fd, const char *s) {
    if (write(fd, s, strlen(s)) < 0) _exit(2);
    usleep(30000);
}
int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char a[64], b[64], c[64];
    snprintf(a, sizeof a, "out of rank %d, ", rank);
    snprintf(b, sizeof b, "piece two of %d, ", rank);
    snprintf(c, sizeof c, "end %d\n", rank);
    put(1, a); put(1, b); put(1, c);
    snprintf(a, sizeof a, "err of rank %d, ", rank);
    snprintf(b, sizeof b, "piece two of %d, ", rank);
    snprintf(c, sizeof c, "end %d\n", rank);
    put(2, a); put(2, b); put(2, c);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
"#;

#[test]
fn lines_written_in_pieces_come_out_whole_per_rank() {
    let mut c = Cluster::start(&[]);
    c.add_agent("l2", "127.0.0.2", 2, &[]);
    c.add_agent("l3", "127.0.0.3", 2, &[]);
    c.wait_offered(2);

    let prog = c.compile_mpi("mpicc", "pieces", PIECES);

    let id = c.submit(&["-n", "4", "--", "mpiexec", &prog]);
    let waited = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    let logs = c.logs(id);
    assert!(waited.status.success(), "{job}\n{logs}");
    assert_eq!(job["allocation"].as_array().unwrap().len(), 2, "{job}");

    for r in 0..4 {
        let out = c.graze(&["logs", &id.to_string(), "--rank", &r.to_string()]);
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want_out = format!("out of rank {r}, piece two of {r}, end {r}");
        let want_err = format!("err of rank {r}, piece two of {r}, end {r}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            vec![want_out.as_str()],
            "rank {r}'s stdout; all:\n{logs}"
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines,
            vec![want_err.as_str()],
            "rank {r}'s stderr; all:\n{logs}"
        );
    }
    // Nothing is left over unlabelled or under a wrong rank: the job's output is these lines,
    // each once (`graze logs` prints stdout lines to stdout, stderr lines to stderr).
    let all = c.graze(&["logs", &id.to_string()]);
    for (name, text) in [("stdout", &all.stdout), ("stderr", &all.stderr)] {
        let text = String::from_utf8_lossy(text);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        let word = if name == "stdout" { "out" } else { "err" };
        let want: Vec<String> = (0..4)
            .map(|r| format!("[{r}] {word} of rank {r}, piece two of {r}, end {r}"))
            .collect();
        assert_eq!(lines, want, "the job's {name}");
    }
}
