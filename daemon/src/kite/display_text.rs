//! Text from outside (Kite's answers) made safe to show in logs, on terminals, in events and in
//! the env file: no control characters, trimmed, bounded.

/// Longest display text kept (user names, e-mail, broker); longer text is cut.
pub const MAX_TEXT_CHARS: usize = 256;

/// Display text without control characters (newlines, escapes, NUL), trimmed and bounded.
pub fn clean_text(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT_CHARS)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text() {
        assert_eq!(
            clean_text("Kite\u{1b}[31m Tester\nX=1\0"),
            "Kite[31m TesterX=1"
        );
        assert_eq!(clean_text(&"n".repeat(300)).len(), MAX_TEXT_CHARS);
    }
}
