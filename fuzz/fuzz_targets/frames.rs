//! Arbitrary bytes through the frame splitter and every message decoder: nothing may panic.
#![no_main]

use graze_proto::{
    decode, AgentMsg, ClientReply, ClientRequest, FrameDecoder, Hello, HelloReply, SchedulerMsg,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As one body.
    let _ = decode::<Hello>(data);
    let _ = decode::<HelloReply>(data);
    let _ = decode::<AgentMsg>(data);
    let _ = decode::<SchedulerMsg>(data);
    let _ = decode::<ClientRequest>(data);
    let _ = decode::<ClientReply>(data);
    // As a stream of frames, fed in uneven pieces.
    let mut d = FrameDecoder::new();
    for chunk in data.chunks(7) {
        d.push(chunk);
        while let Ok(Some(body)) = d.next_frame() {
            let _ = decode::<AgentMsg>(&body);
            let _ = decode::<ClientRequest>(&body);
        }
    }
});
