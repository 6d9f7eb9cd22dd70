//! kite-bench: how fast `kitectl get-token` and kited are, side by side with `cat`, in one run.
//!
//! ```text
//! cargo build --release --workspace --bins && cargo run --release -p kite-tools --bin kite-bench
//! ```
//!
//! Starts the Kite simulator in-process and the release `kited` found next to this executable
//! (`target/release/`), logs in through the simulator, then measures: `kitectl get-token` as a
//! whole process against `cat` of a small file (interleaved, so drift hits both alike), the raw
//! socket round trip, throughput with concurrent clients, the daemon's CPU per request, its idle
//! RSS, threads and wake-ups, and the binary sizes. Progress goes to stderr; stdout is the report
//! as markdown (paste it into docs/benchmarks.md).

mod idle;
mod live_token;
mod machine;
mod processes;
mod procfs;
mod report;
mod setup;
mod socket;
mod throughput;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kite_tests::harness::bin;

/// The command documented in docs/benchmarks.md.
const COMMAND: &str =
    "cargo build --release --workspace --bins && cargo run --release -p kite-tools --bin kite-bench";

#[derive(Debug, Parser)]
#[command(
    name = "kite-bench",
    about = "Benchmarks kitectl get-token and kited (release build) against cat, in one run",
    after_help = concat!(
        "Run: cargo build --release --workspace --bins && ",
        "cargo run --release -p kite-tools --bin kite-bench [-- --idle-secs 60]"
    )
)]
struct Opts {
    /// Length of the idle window in which kited's wake-ups are counted.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Process runs of each of `kitectl get-token` and `cat` (interleaved).
    #[arg(long, default_value_t = 2000)]
    processes: usize,
    /// Requests on one persistent socket connection.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Connect + request + close round trips.
    #[arg(long, default_value_t = 5000)]
    connects: usize,
    /// Concurrent client threads in the throughput runs.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Seconds each throughput run lasts.
    #[arg(long, default_value_t = 3.0)]
    load_secs: f64,
    /// Logins in the live-token run (from Kite's answer to each program using the new token).
    #[arg(long, default_value_t = 30)]
    live_logins: usize,
    /// Run only the live-token measurement.
    #[arg(long)]
    only_live: bool,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    match run(&opts) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kite-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn progress(what: &str) {
    eprintln!("kite-bench: {what}");
}

/// The repository this kite-bench was built from (for the client libraries it drives).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(opts: &Opts) -> Result<String, String> {
    if cfg!(debug_assertions) {
        progress("warning: this is a debug build of kite-bench; run it with --release");
    }
    if opts.only_live {
        progress("live token only");
        return live_token::run(&bin("kitectl"), &repo(), opts.live_logins);
    }
    setup::require_binaries()?;
    let kited = bin("kited");
    let kitectl = bin("kitectl");
    if !kited.to_string_lossy().contains("/release/") {
        progress(&format!(
            "warning: measuring {} (not a release build)",
            kited.display()
        ));
    }
    let cat = machine::which("cat").ok_or("no `cat` on PATH")?;
    let ticks = procfs::clock_ticks();
    let load_before = machine::loadavg();

    let mut bench = setup::Bench::start()?;

    // --- 1. Whole processes: kitectl get-token vs cat --------------------------------------
    let commands = processes::Commands::new(&kitectl, &cat, &bench)?;
    let whole = processes::interleaved(&commands, opts.processes, &bench.expected_stdout)?;

    // --- 2. Raw socket round trips -----------------------------------------------------------
    let latency = socket::latency(&bench, opts.requests, opts.connects)?;

    // --- 3. Throughput with concurrent clients ---------------------------------------------
    let load = Duration::from_secs_f64(opts.load_secs);
    let throughput = throughput::run(&bench, &commands, opts.threads, load, ticks)?;

    // --- 4. Idle ---------------------------------------------------------------------------
    let idle = idle::measure(&bench, opts.idle_secs)?;
    bench.daemon.terminate();

    // --- 5. Sizes --------------------------------------------------------------------------
    let sizes = report::Sizes {
        kitectl: machine::size_of(&kitectl),
        kited: machine::size_of(&kited),
    };

    let results = report::Results {
        rss_after_login: bench.rss_after_login,
        whole,
        latency,
        throughput,
        idle,
        sizes,
    };
    let mut out = report::markdown(opts, &load_before, &results);
    progress("live token: logins reaching watch, the libraries, Redis and an exec child");
    out.push_str(&live_token::run(&kitectl, &repo(), opts.live_logins)?);
    Ok(out)
}
