//! One client connection on the socket: bounded lines in, whole lines out.

use kite_proto::{FrameError, LineBuffer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from the socket per call; requests are tiny, so one read is usually one request.
const READ_CHUNK: usize = 4096;

pub struct Connection<S> {
    stream: S,
    lines: LineBuffer,
    chunk: Box<[u8; READ_CHUNK]>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            lines: LineBuffer::new(),
            chunk: Box::new([0; READ_CHUNK]),
        }
    }

    /// The next line from the client; `None` when it hung up (a partial last line is dropped).
    pub async fn read_line(&mut self) -> std::io::Result<Option<Result<Vec<u8>, FrameError>>> {
        loop {
            if let Some(line) = self.lines.next_line() {
                return Ok(Some(line));
            }
            let n = self.stream.read(&mut self.chunk[..]).await?;
            if n == 0 {
                return Ok(None);
            }
            self.lines.push(&self.chunk[..n]);
        }
    }

    pub async fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.stream.write_all(line.as_bytes()).await?;
        self.stream.flush().await
    }
}
