//! Newline-delimited framing with a hard cap on line length, shared by the daemon and clients.
//!
//! [`LineBuffer`] is a pure decoder: feed it bytes as they arrive, take complete lines out. It
//! never holds more than [`MAX_LINE`] bytes of an unfinished line, so a peer that never sends a
//! newline cannot make the daemon's memory grow.

use std::fmt;

/// Longest accepted line, newline excluded. Requests are a few hundred bytes; 64 KiB leaves room
/// for a pasted callback URL while bounding what one connection can make the daemon hold.
pub const MAX_LINE: usize = 64 * 1024;

/// Why a frame could not be produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The line grew past [`MAX_LINE`] without a newline. The rest of it is skipped.
    TooLong,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong => write!(f, "line longer than {MAX_LINE} bytes"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Accumulates bytes and yields complete lines (without `\n`, and without a trailing `\r`).
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
    /// Set while skipping the remainder of an over-long line up to its newline.
    discarding: bool,
    /// Lines (or errors) found but not yet taken.
    ready: std::collections::VecDeque<Result<Vec<u8>, FrameError>>,
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the peer.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.take_chunk(&bytes[..i]);
                    if self.discarding {
                        self.discarding = false;
                    } else {
                        let mut line = std::mem::take(&mut self.pending);
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        self.ready.push_back(Ok(line));
                    }
                    self.pending.clear();
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.take_chunk(bytes);
                    bytes = &[];
                }
            }
        }
    }

    fn take_chunk(&mut self, chunk: &[u8]) {
        if self.discarding {
            return;
        }
        if self.pending.len() + chunk.len() > MAX_LINE {
            self.pending = Vec::new();
            self.discarding = true;
            self.ready.push_back(Err(FrameError::TooLong));
        } else {
            self.pending.extend_from_slice(chunk);
        }
    }

    /// The next complete line, or the error that stands in its place.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        self.ready.pop_front()
    }

    /// Bytes held for an unfinished line (bounded by [`MAX_LINE`]).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// `value` as JSON on one line, newline included: how every message and event is framed.
pub(crate) fn line_of(value: &impl serde::Serialize) -> String {
    let mut line = serde_json::to_string(value)
        .expect("this crate's messages are string-keyed structs: they always serialize");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(buf: &mut LineBuffer) -> Vec<Result<Vec<u8>, FrameError>> {
        std::iter::from_fn(|| buf.next_line()).collect()
    }

    #[test]
    fn splits_lines_across_pushes() {
        let mut buf = LineBuffer::new();
        buf.push(b"{\"op\":");
        assert!(buf.next_line().is_none());
        buf.push(b"\"ping\"}\r\n{}\nrest");
        assert_eq!(
            lines(&mut buf),
            vec![Ok(b"{\"op\":\"ping\"}".to_vec()), Ok(b"{}".to_vec())]
        );
        assert_eq!(buf.pending_len(), 4);
    }

    #[test]
    fn over_long_line_is_one_error_then_recovers() {
        let mut buf = LineBuffer::new();
        let big = vec![b'x'; MAX_LINE + 10];
        buf.push(&big);
        buf.push(&big);
        buf.push(b"\n{\"op\":\"ping\"}\n");
        assert_eq!(
            lines(&mut buf),
            vec![Err(FrameError::TooLong), Ok(b"{\"op\":\"ping\"}".to_vec())]
        );
    }

    #[test]
    fn exactly_max_line_is_accepted() {
        let mut buf = LineBuffer::new();
        let mut line = vec![b'a'; MAX_LINE];
        line.push(b'\n');
        buf.push(&line);
        assert_eq!(lines(&mut buf), vec![Ok(vec![b'a'; MAX_LINE])]);
    }

    proptest! {
        #[test]
        fn never_holds_more_than_the_cap(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20_000), 0..20)) {
            let mut buf = LineBuffer::new();
            for chunk in &chunks {
                buf.push(chunk);
                prop_assert!(buf.pending_len() <= MAX_LINE);
                while let Some(line) = buf.next_line() {
                    if let Ok(line) = line {
                        prop_assert!(line.len() <= MAX_LINE);
                        prop_assert!(!line.contains(&b'\n'));
                    }
                }
            }
        }

        #[test]
        fn chunking_does_not_change_the_lines(data in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..2000), cut in 0usize..2000) {
            let cut = cut.min(data.len());
            let mut whole = LineBuffer::new();
            whole.push(&data);
            let mut split = LineBuffer::new();
            split.push(&data[..cut]);
            split.push(&data[cut..]);
            prop_assert_eq!(lines(&mut whole), lines(&mut split));
        }
    }
}
