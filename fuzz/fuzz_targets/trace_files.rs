//! Arbitrary bytes as graze trace files (docs/TRACE_FORMAT.md), alone and merged: nothing may
//! panic; a refusal names the file and a byte inside it.
#![no_main]

use graze_trace::{format, merge, ClockSample, NodeInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = format::parse("fuzz.gzt", data) {
        assert!(e.offset <= data.len());
    }
    // The same bytes with a valid header in front, so the records are reached.
    let mut file = format::Writer::new(&format::Header {
        rank: 0,
        world_size: 2,
        pid: 1,
        dropped: 0,
        start_ns: 0,
        host: "fuzz".into(),
    })
    .finish();
    file.extend_from_slice(data);
    let _ = format::parse("rank-0.gzt", &file);
    // Split at the first 0xff into two nodes' files; clock samples from the first 24 bytes.
    let cut = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let clock: Vec<ClockSample> = data
        .chunks_exact(24)
        .take(4)
        .map(|c| ClockSample {
            local_ns: u64::from_le_bytes(c[0..8].try_into().unwrap_or_default()),
            offset_ns: i64::from_le_bytes(c[8..16].try_into().unwrap_or_default()),
            rtt_ns: u64::from_le_bytes(c[16..24].try_into().unwrap_or_default()),
        })
        .collect();
    let mut second = format::Writer::new(&format::Header {
        rank: 1,
        world_size: 2,
        pid: 2,
        dropped: 0,
        start_ns: 0,
        host: "fuzz".into(),
    })
    .finish();
    second.extend_from_slice(&data[cut..]);
    let nodes = [
        NodeInput {
            node: "a".into(),
            files: vec![("rank-0.gzt".into(), file[..64 + cut].to_vec())],
            clock: clock.clone(),
        },
        NodeInput {
            node: "b".into(),
            files: vec![("rank-1.gzt".into(), second)],
            clock,
        },
    ];
    if let Ok(t) = merge(&nodes) {
        let mut out = Vec::new();
        let _ = graze_trace::chrome::write(&t, &mut out);
        let _ = graze_trace::summary::Summary::of(&t).to_string();
    }
});
