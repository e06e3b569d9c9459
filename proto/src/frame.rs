//! Framing: a 4-byte big-endian length, then that many bytes of JSON.

use serde::{de::DeserializeOwned, Serialize};

/// The largest frame body accepted, in bytes.
pub const MAX_FRAME: usize = 4 << 20;

/// Errors decoding frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is above [`MAX_FRAME`]. Not retryable: the connection is closed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not a valid message. Not retryable: the connection is closed.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Encode a message as one frame (length prefix plus JSON body).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising these types to JSON cannot fail: no maps with non-string keys, no I/O.
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decode one frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

/// Check a length prefix.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(len)
}

/// A sans-IO frame splitter: push bytes as they arrive, pop whole frame bodies.
#[derive(Default, Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A new, empty decoder.
    pub fn new() -> Self {
        Self::default()
    }
    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    /// The next whole frame body, if one is complete.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = frame_len([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])?;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }
}
