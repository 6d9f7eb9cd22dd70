//! kited: keeps a Zerodha Kite Connect access token alive and hands it to local programs.
//!
//! # Layout
//!
//! Layers, bottom up; nothing points up:
//!
//! - `clock`, `token`: leaves. The daily cutoff's arithmetic; the token record and its secrets.
//! - `config/`: what the person asked for: flags, environment, the TOML file, `check-config`.
//! - `kite/`: the only code that talks to Kite Connect, and what it accepts from Kite's answers.
//! - `store/`: the only code that touches sled: the token record, durably.
//! - `session/`: the token's state and everything that changes it: logins, events, tickets.
//! - `server/`: how clients reach kited: the Unix socket (`ipc/`) and HTTP (`http/`).
//! - `readiness/`: the morning checks (token, Kite, egress IP, clock, deliveries) that
//!   `doctor` and the readiness event report.
//! - `schedule/`: what happens by itself, and when: warnings, expiry, checks, reminders and their
//!   repeats, the readiness check.
//! - `notify/`: who gets told: desktop, `notify.command`, the env file, phone push, the Redis sink.
//! - `run/`: how the process starts and stops: lifecycle, systemd, logging.

mod clock;
mod config;
mod kite;
mod notify;
mod readiness;
mod run;
mod schedule;
mod server;
mod session;
mod store;
mod token;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps a Zerodha Kite Connect access token alive and hands it to local programs.
#[derive(Debug, Parser)]
#[command(
    name = "kited",
    version,
    after_help = "\
Examples:
  kited                      run the default profile
  kited --profile prod run   run the `prod` profile
  kited check-config         show the resolved settings and the callback URL

Environment: KITE_API_KEY and KITE_API_SECRET give the Kite app's key and secret (else
kite.api_key in the config file, and the secret from kite.api_secret_file, systemd's credential
or $XDG_CONFIG_HOME/kited/PROFILE.api-secret); KITE_API_ROOT, KITE_LOGIN_URL, KITED_LISTEN,
KITED_SOCKET, KITED_STATE_DIR, KITED_PUBLIC_URL and KITED_CONFIG override their settings.
`kitectl setup` writes the config and secret files.

As a systemd user service: systemctl --user enable --now kited (or kited@PROFILE)."
)]
struct Cli {
    /// Profile to serve (one Kite app = one profile): picks config, socket and state paths.
    #[arg(long, global = true, default_value = kite_proto::socket_path::DEFAULT_PROFILE)]
    profile: String,
    /// Config file (default: $XDG_CONFIG_HOME/kited/PROFILE.toml).
    #[arg(long, global = true, env = "KITED_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address (default 127.0.0.1:8079).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// IPC socket path (default $XDG_RUNTIME_DIR/kited/PROFILE.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// State directory for the token store (default $XDG_STATE_HOME/kited/PROFILE).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground (the default); logs go to stderr.
    #[command(after_help = "\
Examples:
  kited run                                     the default profile, as kited.service runs it
  kited --profile dev --listen 127.0.0.1:8079 run
  RUST_LOG=debug kited run                      more detail in the log

SIGHUP reloads the config file, SIGTERM stops cleanly. Exit 78 means the configuration is
invalid (systemd does not restart kited then); fix it and start again.")]
    Run,
    /// Print the resolved settings and the callback URL to register with Kite.
    #[command(after_help = "\
Examples:
  kited check-config
  kited --profile prod check-config

The api secret is shown as set or missing, never its value. Exit 0 when kited can log in,
1 when the api key or secret is missing, 78 when the config file is invalid.")]
    CheckConfig,
    /// Print the man page (roff), or write every page (one per command) into a directory.
    #[command(after_help = "Example:\n  kited man > ~/.local/share/man/man1/kited.1")]
    Man {
        /// Write kited.1 and one kited-COMMAND.1 per command into DIR.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `kited man`: the roff page on stdout, or every page into `dir`.
fn man_pages(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use clap::CommandFactory;
    match dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir)
            .with_context(|| format!("cannot write the man pages into {}", dir.display()))?,
        None => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout().lock())
            .context("cannot write the man page")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// One line a person can act on: the chain of causes joined with ": ", each said once (an error
/// that already quotes its source, like "cannot read X: No such file", does not repeat it), and
/// line breaks inside a cause (a TOML parser's report) folded into spaces.
fn one_sentence(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain().map(|c| c.to_string()) {
        let cause = cause.split_whitespace().collect::<Vec<_>>().join(" ");
        if message.contains(&cause) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&cause);
    }
    message
}

/// sysexits(3) EX_CONFIG, which systemd shows as `status=78/CONFIG`; the units do not restart on it.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = kite_proto::socket_path::validate_profile(&cli.profile) {
        run::log_writer::say(&format!("kited: {message}"));
        return ExitCode::from(2);
    }
    let flags = config::Flags {
        profile: cli.profile,
        config: cli.config,
        listen: cli.listen,
        socket: cli.socket,
        state_dir: cli.state_dir,
    };
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run::run(flags),
        Command::CheckConfig => config::check::run(&flags),
        Command::Man { dir } => man_pages(dir.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let message = one_sentence(&error);
            // Under systemd the line is marked as an error for the journal (`journalctl -p err`).
            let priority = if run::logging::stderr_is_journal() {
                "<3>"
            } else {
                ""
            };
            run::log_writer::say(&format!("{priority}kited: {message}"));
            if error.downcast_ref::<config::ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_sentence;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /x.toml: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn causes_are_said_once_on_one_line() {
        let missing = std::io::Error::from_raw_os_error(2);
        let error = anyhow::Error::new(Quoting { source: missing }).context("cannot start");
        let line = one_sentence(&error);
        assert_eq!(line.matches("os error 2").count(), 1, "{line}");
        assert!(
            line.starts_with("cannot start: cannot read /x.toml: "),
            "{line}"
        );
        let multi = anyhow::anyhow!("TOML parse error at line 2\n  |\n2 | x =\n  |    ^");
        assert!(!one_sentence(&multi).contains('\n'));
    }
}
