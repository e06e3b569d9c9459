//! What `graze top` asks the scheduler for once, on a key, rather than having it pushed: the
//! merged trace of a job for the timeline view.

use crate::client::Client;
use anyhow::Context;
use graze_proto::JobId;
use graze_trace::Trace;

/// The merged trace of `job`'s latest run: its nodes' files fetched from the scheduler
/// ([`crate::trace_cmd::fetch`]) and merged on one clock (`graze_trace::merge`). The errors
/// say what is wrong (not traced, no trace yet, a bad file) for the timeline's message.
pub async fn load_trace(client: &Client, job: JobId) -> anyhow::Result<Trace> {
    let nodes = crate::trace_cmd::fetch(client, job.into(), None).await?;
    graze_trace::merge(&nodes).with_context(|| format!("merging the trace of job {job}"))
}
