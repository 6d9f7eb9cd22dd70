//! kitectl's command line: completions, the man page, and an example in every help.

use std::process::{Command, Stdio};

use kite_tests::harness::bin;

use crate::helper::systemd::{kitectl, ok};
use crate::helper::text;

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = kitectl(&["completions", shell]);
        assert!(ok(&out), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        assert!(script.contains("get-token"), "{shell}: no get-token");
    }
    let out = kitectl(&["man"]);
    assert!(ok(&out), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH"), "not roff:\n{page}");
    assert!(page.contains("get\\-token") || page.contains("get-token"));
}

#[test]
fn every_help_has_an_example() {
    let kitectl_commands = [
        "get-token",
        "status",
        "login",
        "exchange",
        "logout",
        "env",
        "exec",
        "watch",
        "ping",
        "shutdown",
        "completions",
        "man",
    ];
    let mut missing = Vec::new();
    let mut check = |program: &str, args: Vec<&str>| {
        let out = Command::new(bin(program))
            .args(&args)
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let help = text(&out.stdout);
        if !out.status.success() || !help.contains("Example") {
            missing.push(format!("{program} {}", args.join(" ")));
        }
    };
    check("kitectl", vec![]);
    for command in kitectl_commands {
        check("kitectl", vec![command]);
    }
    check("kited", vec![]);
    check("kited", vec!["run"]);
    check("kited", vec!["check-config"]);
    assert!(missing.is_empty(), "--help without an example: {missing:?}");
}
