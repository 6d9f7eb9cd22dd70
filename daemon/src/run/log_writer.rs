//! Where log lines go: stderr, but a write that fails (the reader of a pipe exited, the
//! terminal of `kited &` closed: EPIPE, EIO) is dropped, never fatal. A token daemon must keep
//! answering when nobody reads its log.

use std::io::{self, Write};

/// stderr for the log; every write reports success, whatever happened to the bytes.
#[derive(Clone, Copy, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LossyStderr {
    type Writer = LossyStderr;

    fn make_writer(&'a self) -> Self::Writer {
        LossyStderr
    }
}

/// One line to stderr for the few messages printed outside the log (start-up failures);
/// `eprintln!` would panic when stderr is gone.
pub fn say(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}
