//! One client connection on the socket: bounded lines in, whole lines out.

use kite_proto::{FrameError, LineBuffer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from the socket per call; requests are tiny, so one read is usually one request.
const READ_CHUNK: usize = 4096;

pub struct Connection<S> {
    stream: S,
    lines: LineBuffer,
    chunk: Box<[u8; READ_CHUNK]>,
    /// A line that arrived while [`Connection::hung_up`] watched the socket.
    early: Option<Result<Vec<u8>, FrameError>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            lines: LineBuffer::new(),
            chunk: Box::new([0; READ_CHUNK]),
            early: None,
        }
    }

    /// The next line from the client; `None` when it hung up (a partial last line is dropped).
    pub async fn read_line(&mut self) -> std::io::Result<Option<Result<Vec<u8>, FrameError>>> {
        if let Some(line) = self.early.take() {
            return Ok(Some(line));
        }
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

    /// Resolves when the client hangs up (end of stream or a read error), for a request that
    /// may block for long (`get_token` with `wait_secs`). Bytes that arrive meanwhile are kept
    /// for [`Connection::read_line`]; once a whole line is waiting it stops reading (and never
    /// resolves), so a client that pipelines requests cannot make the buffer grow.
    pub async fn hung_up(&mut self) {
        loop {
            if self.early.is_none() {
                self.early = self.lines.next_line();
            }
            if self.early.is_some() {
                return std::future::pending().await;
            }
            match self.stream.read(&mut self.chunk[..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => self.lines.push(&self.chunk[..n]),
            }
        }
    }

    pub async fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.stream.write_all(line.as_bytes()).await?;
        self.stream.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn hung_up_keeps_early_lines_and_sees_the_hang_up() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut connection = Connection::new(server);
        client
            .write_all(b"{\"op\":\"ping\"}\n{\"op\":")
            .await
            .unwrap();
        // A whole line is waiting: no more reading, and no hang-up reported.
        let watched = tokio::time::timeout(Duration::from_millis(50), connection.hung_up()).await;
        assert!(watched.is_err());
        assert_eq!(
            connection.read_line().await.unwrap(),
            Some(Ok(b"{\"op\":\"ping\"}".to_vec()))
        );
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), connection.hung_up())
            .await
            .expect("the hang-up is seen");
        assert_eq!(connection.read_line().await.unwrap(), None);
    }
}
