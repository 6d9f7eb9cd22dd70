//! What `kitectl setup` asks for: the checks each answer must pass, and the terminal prompts.

use rustix::termios::{self, LocalModes, OptionalActions};
use std::io::{self, BufRead, Write};
use std::os::fd::AsFd;

/// Kite api keys are short lowercase alphanumerics; this range leaves room for any future
/// length while catching a pasted secret, URL or stray quote.
const API_KEY_LEN: std::ops::RangeInclusive<usize> = 6..=32;

/// Checks an api key: 6 to 32 ASCII letters and digits.
pub fn api_key(text: &str) -> Result<String, String> {
    let key = text.trim();
    if API_KEY_LEN.contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(key.to_string())
    } else {
        Err(format!(
            "the api key must be 6 to 32 letters and digits (as on developers.kite.trade), not {:?}",
            shorten(key)
        ))
    }
}

/// Checks an api secret: the text without its line ending, not blank, on one line.
pub fn api_secret(text: &str) -> Result<String, String> {
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.trim().is_empty() {
        return Err("the api secret is empty: copy it from your app's page on \
                    developers.kite.trade and paste it (nothing shows while you paste)"
            .into());
    }
    if secret.chars().any(char::is_control) {
        return Err("the api secret must be one line of text".into());
    }
    Ok(secret.to_string())
}

/// Checks a public base URL: `http(s)://host[:port]`, no path, query, user or odd characters.
/// A trailing `/` is dropped.
pub fn public_url(text: &str) -> Result<String, String> {
    let url = text.trim();
    let bad = |why: &str| {
        Err(format!(
            "the public URL must look like https://kite.example.com (scheme, host, optional port; {why}), not {:?}",
            shorten(url)
        ))
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad("no scheme");
    };
    if scheme != "https" && scheme != "http" {
        return bad("the scheme is http or https");
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return bad("no path");
    }
    if rest.contains('@') {
        return bad("no user name");
    }
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']').map_or(rest.len(), |i| i + 1);
        match &rest[end..] {
            "" => (rest, None),
            after => match after.strip_prefix(':') {
                Some(port) => (&rest[..end], Some(port)),
                None => return bad("the host is a name or an address"),
            },
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !host_ok {
        return bad("the host is a name or an address");
    }
    if let Some(port) = port {
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0)
            || !port.bytes().all(|b| b.is_ascii_digit())
        {
            return bad("the port is a number from 1 to 65535");
        }
    }
    Ok(format!("{scheme}://{rest}"))
}

/// The first 40 characters, for quoting bad input back without flooding the terminal.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// Whether stdin is a terminal a person can answer on.
pub fn stdin_is_terminal() -> bool {
    termios::isatty(io::stdin())
}

/// Prints `question` on stderr and reads one line from stdin (None at end of input).
pub fn ask(question: &str) -> io::Result<Option<String>> {
    let mut err = io::stderr().lock();
    err.write_all(question.as_bytes())?;
    err.flush()?;
    read_line()
}

/// Like [`ask`], with the terminal's echo off while the answer is typed.
pub fn ask_hidden(question: &str) -> io::Result<Option<String>> {
    let stdin = io::stdin();
    let _echo_off = EchoOff::new(stdin.as_fd())?;
    let answer = ask(question);
    // The Enter the person typed was not echoed either.
    let _ = io::stderr().write_all(b"\n");
    answer
}

fn read_line() -> io::Result<Option<String>> {
    let mut line = String::new();
    match io::stdin().lock().read_line(&mut line)? {
        0 => Ok(None),
        _ => Ok(Some(line.trim_end_matches(['\n', '\r']).to_string())),
    }
}

/// Turns a terminal's echo off, and back to what it was when dropped.
struct EchoOff<'fd> {
    fd: std::os::fd::BorrowedFd<'fd>,
    saved: termios::Termios,
}

impl<'fd> EchoOff<'fd> {
    fn new(fd: std::os::fd::BorrowedFd<'fd>) -> io::Result<Self> {
        let saved = termios::tcgetattr(fd)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // Keep echoing the newline so the cursor moves on as usual.
        quiet.local_modes.insert(LocalModes::ECHONL);
        termios::tcsetattr(fd, OptionalActions::Now, &quiet)?;
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys() {
        assert_eq!(api_key(" abcdef12 ").unwrap(), "abcdef12");
        assert!(api_key("kitedtestkey0001").is_ok());
        assert!(api_key(&"a".repeat(32)).is_ok());
        for bad in [
            "",
            "abc12",
            &"a".repeat(33),
            "abc def1",
            "abc-def1",
            "ключключ",
        ] {
            assert!(api_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_secrets() {
        assert_eq!(api_secret("s3cret\n").unwrap(), "s3cret");
        assert_eq!(api_secret("s3cret\r\n").unwrap(), "s3cret");
        for bad in ["", "\n", "   \n", "a\nb", "a\tb"] {
            assert!(api_secret(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn public_urls() {
        for (good, clean) in [
            ("https://kite.example.com", "https://kite.example.com"),
            ("https://kite.example.com/", "https://kite.example.com"),
            ("http://127.0.0.1:8443", "http://127.0.0.1:8443"),
            ("https://[::1]:8443", "https://[::1]:8443"),
            ("https://[::1]", "https://[::1]"),
        ] {
            assert_eq!(public_url(good).unwrap(), clean, "{good}");
        }
        for bad in [
            "kite.example.com",
            "ftp://kite.example.com",
            "https://kite.example.com/kited",
            "https://kite.example.com/auth/callback",
            "https://kite.example.com?x=1",
            "https://user@kite.example.com",
            "https://kite.example.com:0",
            "https://kite.example.com:99999",
            "https://kite.example.com:+1",
            "https://",
            "https://kite example.com",
            "https://kite\".com",
        ] {
            assert!(public_url(bad).is_err(), "{bad:?}");
        }
    }
}
