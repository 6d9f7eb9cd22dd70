//! kitectl: the synchronous client of kited. Plain `get-token` skips clap (see `cli`).

mod answers;
mod cli;
mod client;
mod commands;
mod exit;
mod login;
mod paste;
mod profile_files;
mod profile_port;
mod qr;
mod setup;
mod status_text;
mod supervise;

use clap::Parser;
use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let code = match cli::fast_get_token(args.get(1..).unwrap_or_default()) {
        Some(fast) => commands::get_token(&fast.target, fast.wait, fast.json),
        None => match cli::Cli::try_parse_from(&args) {
            Ok(cli) => commands::run(cli),
            Err(err) => cli::usage_error(err),
        },
    };
    ExitCode::from(code)
}
