//! What `kitectl exchange` trades: read from stdin or a prompt, so the one-time request token
//! never sits in the command line, where every local user can read it (`ps`, `/proc/PID/cmdline`).

use crate::exit::Failure;
use std::io::{self, BufRead, IsTerminal, Read, Write};

/// The most `exchange` reads from stdin; a pasted callback URL is well under 1 KiB.
const MAX_PASTE: u64 = 64 * 1024;

/// The warning printed after an exchange whose request token came on the command line.
pub const ARGV_WARNING: &str = "kitectl: note: a request token on the command line can be read \
    by other local users while kitectl runs; next time run `kitectl exchange` and paste the URL, \
    or pipe it in";

/// Reads the request token or callback URL: a prompt on a terminal, else the first non-empty
/// line of stdin.
pub fn read_pasted() -> Result<String, Failure> {
    let stdin = io::stdin();
    let text = if stdin.is_terminal() {
        let mut err = io::stderr();
        let _ = err.write_all(b"Paste the URL the browser ended on (or the request_token): ");
        let _ = err.flush();
        let mut line = String::new();
        stdin
            .lock()
            .take(MAX_PASTE)
            .read_line(&mut line)
            .map_err(|e| Failure::Local(format!("cannot read the pasted URL: {e}")))?;
        line
    } else {
        let mut bytes = Vec::new();
        stdin
            .lock()
            .take(MAX_PASTE)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::Local(format!("cannot read stdin: {e}")))?;
        String::from_utf8_lossy(&bytes).into_owned()
    };
    first_line(&text).ok_or_else(|| {
        Failure::Local(
            "nothing to exchange: paste the URL the browser ended on (or the request_token), \
             or pipe it in: kitectl exchange < file"
                .into(),
        )
    })
}

/// The first non-blank line, trimmed.
fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_non_blank_line() {
        assert_eq!(first_line("\n  abc \nxyz\n").as_deref(), Some("abc"));
        assert_eq!(first_line(" \n\t\n"), None);
    }
}
