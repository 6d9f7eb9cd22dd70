//! The report: latency samples and their percentiles, and the markdown table of every result
//! with its goal.

use std::fmt::Write as _;
use std::time::Duration;

use crate::idle::Idle;
use crate::machine::{command_output, cpu_model, loadavg};
use crate::processes::Whole;
use crate::socket::Latency;
use crate::throughput::{Load, Throughput};
use crate::{Opts, COMMAND};

/// Latency samples, sorted once.
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Samples {
        v.sort_unstable();
        Samples(v)
    }

    /// Nearest-rank percentile, `p` in 0..=100.
    pub fn pct(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn median(&self) -> Duration {
        self.pct(50.0)
    }
}

fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// `median (p90)`, in µs.
fn median_p90(samples: &Samples) -> String {
    format!("{} ({})", us(samples.median()), us(samples.pct(90.0)))
}

/// The percentiles `ps` of `samples`, in µs, separated by ` / `.
fn percentiles(samples: &Samples, ps: &[f64]) -> String {
    let values: Vec<String> = ps.iter().map(|p| us(samples.pct(*p))).collect();
    values.join(" / ")
}

fn verdict(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}

/// kited's CPU time per request or process of a load run, from stat / from schedstat.
fn cpu_per_request(load: &Load) -> String {
    let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / load.count.max(1) as f64;
    format!("{:.1} µs / {:.1} µs", per(load.cpu), per(load.sched))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

struct Row {
    metric: String,
    result: String,
    goal: String,
    met: Option<bool>,
}

fn row(metric: &str, result: String, goal: &str, met: Option<bool>) -> Row {
    Row {
        metric: metric.into(),
        result,
        goal: goal.into(),
        met,
    }
}

/// The sizes of the two binaries, in bytes.
pub struct Sizes {
    pub kitectl: u64,
    pub kited: u64,
}

/// Everything the table reports.
pub struct Results {
    /// kited's RSS in KiB right after the login, before any load.
    pub rss_after_login: u64,
    pub whole: Whole,
    pub latency: Latency,
    pub throughput: Throughput,
    pub idle: Idle,
    pub sizes: Sizes,
}

/// The report's markdown: the machine, the runs, then one row a metric.
pub fn markdown(opts: &Opts, load_before: &str, results: &Results) -> String {
    let Results {
        whole,
        latency,
        throughput,
        idle,
        sizes,
        ..
    } = results;
    let (model, cores) = cpu_model();
    let arch = command_output("uname", &["-m"]).unwrap_or_else(|| std::env::consts::ARCH.into());
    let kernel = command_output("uname", &["-r"]).unwrap_or_default();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let rows = vec![
        row(
            "`kitectl get-token` process, median (p90)",
            median_p90(&whole.kitectl),
            "",
            None,
        ),
        row(
            "`cat` small file process, median (p90)",
            median_p90(&whole.cat),
            "",
            None,
        ),
        row(
            "ratio of medians kitectl / cat",
            format!("{:.2}×", whole.ratio()),
            "≤ 1.15×",
            Some(whole.ratio() <= 1.15),
        ),
        row(
            "socket `get_token`, persistent connection, p50 / p99 / p99.9",
            percentiles(&latency.persistent, &[50.0, 99.0, 99.9]),
            "p99 < 200 µs",
            Some(latency.persistent.pct(99.0) < Duration::from_micros(200)),
        ),
        row(
            "same, client and kited pinned to one CPU, p50 / p99 / p99.9",
            latency
                .same_cpu
                .as_ref()
                .map_or("(taskset unavailable)".into(), |t| {
                    percentiles(t, &[50.0, 99.0, 99.9])
                }),
            "",
            None,
        ),
        row(
            "socket connect + `get_token` + close, p50 / p99",
            percentiles(&latency.per_connection, &[50.0, 99.0]),
            "",
            None,
        ),
        row(
            &format!(
                "throughput, {} threads spawning `kitectl get-token`",
                opts.threads
            ),
            format!("{:.0} processes/s", throughput.kitectl.per_sec),
            "≥ 3000/s",
            Some(throughput.kitectl.per_sec >= 3000.0),
        ),
        row(
            &format!(
                "throughput, {} threads spawning `cat` (same harness, for scale)",
                opts.threads
            ),
            format!("{:.0} processes/s", throughput.cats_per_sec),
            "",
            None,
        ),
        row(
            &format!("throughput, {} threads on persistent sockets", opts.threads),
            format!("{:.0} requests/s", throughput.socket.per_sec),
            "",
            None,
        ),
        row(
            "kited CPU per request, socket load (stat / schedstat)",
            cpu_per_request(&throughput.socket),
            "",
            None,
        ),
        row(
            "kited CPU per request, kitectl process load (stat / schedstat)",
            cpu_per_request(&throughput.kitectl),
            "",
            None,
        ),
        row(
            "kited RSS after login (before load)",
            mib(results.rss_after_login),
            "",
            None,
        ),
        row(
            "kited idle RSS after load: anonymous + file-backed (peak VmHWM)",
            format!(
                "{} = {} + {} ({})",
                mib(idle.rss),
                mib(idle.rss_anon),
                mib(idle.rss_file),
                mib(idle.hwm)
            ),
            "≤ 6 MB",
            Some(idle.rss * 1024 <= 6_000_000),
        ),
        row(
            "kited threads when idle",
            idle.threads.to_string(),
            "",
            None,
        ),
        row(
            &format!(
                "kited wake-ups in {} s idle with a live token",
                opts.idle_secs
            ),
            if idle.woke.is_empty() {
                "0".to_string()
            } else {
                format!("{} ({})", idle.wakeups, idle.woke.join(", "))
            },
            "0",
            Some(idle.wakeups == 0),
        ),
        row(
            "`kitectl` binary (stripped release)",
            format!(
                "{} B ({:.2} MiB)",
                sizes.kitectl,
                sizes.kitectl as f64 / 1048576.0
            ),
            "≤ 1 MB",
            Some(sizes.kitectl <= 1_000_000),
        ),
        row(
            "`kited` binary (stripped release)",
            format!(
                "{} B ({:.2} MiB)",
                sizes.kited,
                sizes.kited as f64 / 1048576.0
            ),
            "",
            None,
        ),
    ];

    let mut out = String::new();
    let _ = writeln!(out, "### kite-bench results\n");
    let _ = writeln!(out, "- date: {date}");
    let _ = writeln!(
        out,
        "- machine: `{arch}`, {cores} × {model}, Linux {kernel}"
    );
    let _ = writeln!(out, "- command: `{COMMAND}`");
    let _ = writeln!(
        out,
        "- load average (1/5/15 min) at start: {load_before}; at end: {}",
        loadavg()
    );
    let _ = writeln!(
        out,
        "- runs: {} × kitectl and {} × cat interleaved (ABBA); {} socket requests; {} connects; \
         {} threads × {} s per throughput run; {} s idle window{}\n",
        opts.processes,
        opts.processes,
        opts.requests,
        opts.connects,
        opts.threads,
        opts.load_secs,
        opts.idle_secs,
        if idle.gone > 0 {
            format!(" ({} thread(s) exited during it)", idle.gone)
        } else {
            String::new()
        }
    );
    let _ = writeln!(out, "| metric | result | goal | met |");
    let _ = writeln!(out, "|---|---|---|---|");
    for r in rows {
        let met = r.met.map_or("", verdict);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.metric, r.result, r.goal, met
        );
    }
    out
}
