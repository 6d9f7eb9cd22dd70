//! kited: keeps a Zerodha Kite Connect access token alive and hands it to local programs.

mod accept;
mod alarm;
mod callback;
mod check_config;
mod clock;
mod config;
mod config_file;
mod connection;
mod events;
#[cfg(test)]
mod fixture;
mod hooks;
mod http;
mod http_request;
mod http_trust;
mod ipc;
mod kite;
mod kite_answer;
mod lifecycle;
mod log_writer;
mod logging;
mod login_link;
mod login_state;
mod notify;
mod page;
mod peer_gone;
mod peer_uid;
mod plan;
mod public;
mod reply;
mod requests;
mod routes;
mod schedule;
mod session;
mod session_error;
mod settings;
mod socket_file;
mod store;
mod store_health;
mod systemd;
mod ticket;
mod token;
mod token_api;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps a Zerodha Kite Connect access token alive and hands it to local programs.
#[derive(Debug, Parser)]
#[command(
    name = "kited",
    version,
    after_help = "Examples:\n  kited                      run the default profile\n  kited --profile prod run   run the `prod` profile\n  kited check-config         show the resolved settings and the callback URL\n\nAs a systemd user service: systemctl --user enable --now kited (or kited@PROFILE)."
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
}

/// sysexits(3) EX_CONFIG, which systemd shows as `status=78/CONFIG`; the units do not restart on it.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = kite_proto::socket_path::validate_profile(&cli.profile) {
        log_writer::say(&format!("kited: {message}"));
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
        Command::Run => lifecycle::run(flags),
        Command::CheckConfig => check_config::run(&flags),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // One sentence a person can act on; the chain of causes joined on one line.
            let message = error
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            // Under systemd the line is marked as an error for the journal (`journalctl -p err`).
            let priority = if logging::stderr_is_journal() {
                "<3>"
            } else {
                ""
            };
            log_writer::say(&format!("{priority}kited: {message}"));
            if error.downcast_ref::<config::ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
