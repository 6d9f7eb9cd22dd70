//! kited: keeps a Zerodha Kite Connect access token alive and hands it to local programs.

mod alarm;
mod clock;
mod config;
mod connection;
mod daemon;
mod events;
mod hooks;
mod http;
mod ipc;
mod kite;
mod notify;
mod page;
mod schedule;
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
    after_help = "Examples:\n  kited                      run the default profile\n  kited --profile prod run   run the `prod` profile\n  kited check-config         show the resolved settings and the callback URL"
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
    /// Run the daemon (the default).
    Run,
    /// Print the resolved settings and the callback URL to register with Kite; exit 1 on problems.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = kite_proto::socket_path::validate_profile(&cli.profile) {
        eprintln!("kited: {message}");
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
        Command::Run => daemon::run(flags),
        Command::CheckConfig => daemon::check_config(&flags),
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
            eprintln!("kited: {message}");
            ExitCode::FAILURE
        }
    }
}
