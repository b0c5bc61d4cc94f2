//! How library diagnostics (`tracing` events) reach the terminal: informational events (the
//! epoch lines, downloads, resumes) as plain lines on stderr, warnings and errors with their
//! level in front. `SAMIX_LOG` sets the filter (default: samix's info and everyone's warnings).
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = *event.metadata().level();
        if level != Level::INFO {
            write!(writer, "{}: ", level.as_str().to_lowercase())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// `quiet`: warnings and errors only (unless `SAMIX_LOG` says otherwise). A second call in one
/// process (the Python package runs the command line in-process) keeps the first subscriber.
pub fn init(quiet: bool) {
    let default = if quiet { "warn" } else { "warn,samix=info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SAMIX_LOG").unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).event_format(Plain).try_init().ok();
}
