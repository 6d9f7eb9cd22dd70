//! `kitectl setup` on a terminal: it asks, never echoes the secret, asks again after a typo.

use std::fs;

use kite_tests::terminal::Terminal;

use crate::helper::setup::Home;

#[test]
fn setup_on_a_terminal_asks_and_does_not_echo_the_secret() {
    const SECRET: &str = "typed-secret-7c1d";
    let home = Home::new();
    let mut terminal = Terminal::open();
    let mut child = terminal.spawn(&mut home.kitectl(&["setup", "--no-systemd"]));
    terminal.answer("api key", "abcdef12");
    terminal.answer("api secret", SECRET);
    terminal.answer("Public", "https://kite.example.com");
    let status = child.wait().unwrap();
    let screen = terminal.finish();
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains("abcdef12"),
        "the key is echoed as typed: {screen}"
    );
    assert!(!screen.contains(SECRET), "the secret was echoed:\n{screen}");
    assert!(
        screen.contains("https://kite.example.com/auth/callback"),
        "{screen}"
    );
    assert_eq!(
        fs::read_to_string(home.file("default.api-secret")).unwrap(),
        format!("{SECRET}\n")
    );

    // The terminal's echo is back on afterwards.
    let attrs = rustix::termios::tcgetattr(terminal.slave()).unwrap();
    assert!(attrs
        .local_modes
        .contains(rustix::termios::LocalModes::ECHO));
}

#[test]
fn setup_on_a_terminal_asks_again_after_a_typo_and_says_where_the_secret_is() {
    let home = Home::new();
    let mut terminal = Terminal::open();
    let mut child = terminal.spawn(&mut home.kitectl(&["setup", "--no-systemd"]));
    terminal.answer("api key", "not a key!");
    terminal.answer_again("api key", 2, "abcdef12");
    terminal.answer("api secret", "");
    terminal.answer_again("api secret", 2, "s3cret-after-all");
    terminal.answer("Public", "ftp://nope");
    terminal.answer_again("Public", 2, "");
    let status = child.wait().unwrap();
    let screen = terminal.finish();
    assert!(status.success(), "{screen}");
    assert_eq!(screen.matches("try again").count(), 3, "{screen}");
    assert!(
        screen.contains("copy it from your app's page on developers.kite.trade"),
        "an empty secret says where to find it: {screen}"
    );
    let toml = fs::read_to_string(home.file("default.toml")).unwrap();
    assert!(toml.contains("api_key = \"abcdef12\""), "{toml}");
    assert!(!toml.contains("public_url"), "{toml}");
    assert_eq!(
        fs::read_to_string(home.file("default.api-secret")).unwrap(),
        "s3cret-after-all\n"
    );
}
