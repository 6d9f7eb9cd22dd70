//! The log: lines on stderr filtered by `RUST_LOG`, in the journal's format when stderr is the
//! journal.

use crate::run::log_writer::LossyStderr;

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). When stderr is the journal
/// (`JOURNAL_STREAM` names our stderr, see systemd.exec(5)), lines carry no timestamp (the journal
/// stamps them) and start with a `<N>` syslog priority, so `journalctl -p warning` works.
pub fn init() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LossyStderr)
        // Its own report of a failed write is an `eprintln!`, which panics on a broken stderr.
        .log_internal_errors(false)
        .with_ansi(false)
        .with_target(false);
    if stderr_is_journal() {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_ansi(false)
            .with_target(false);
        builder.event_format(JournalPriority(format)).init();
    } else {
        builder.init();
    }
}

/// Whether stderr is the journal stream systemd connected us to: `JOURNAL_STREAM=DEV:INODE`
/// matching stderr (a variable inherited by a process whose stderr was redirected does not count).
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    match rustix::fs::fstat(std::io::stderr()) {
        Ok(stat) => dev.parse() == Ok(stat.st_dev) && ino.parse() == Ok(stat.st_ino),
        Err(_) => false,
    }
}

/// Prefixes each line with its sd-daemon(3) priority (`<3>` error … `<7>` debug).
struct JournalPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}
