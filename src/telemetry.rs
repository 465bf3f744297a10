//! Logging and traces: a `tracing` subscriber writing text or JSON lines
//! to stderr (journald under systemd) or appending to a file that SIGHUP
//! reopens, so both of logrotate's ways (`copytruncate`, or move +
//! `reload`) are safe; and, with `[telemetry] otlp_endpoint`, a second
//! layer exporting the spans of `spans.rs` over OTLP (`otlp.rs`). Without
//! the endpoint that layer is not installed at all. The log lines' level
//! filter sits behind a `reload` layer, so a configuration reload changes
//! it in place ([`set_level`]) unless `RUST_LOG` set it.

mod otlp;
mod spans;

pub(crate) use otlp::{Tracing, TracingError};
pub(crate) use spans::HeldSpans;
pub(crate) use spans::TARGET;

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LoggingConfig, TelemetryConfig};

/// A log file opened in append mode that can be reopened in place.
#[derive(Clone, Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Arc<RwLock<File>>,
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // O_APPEND: every write lands at the current end, even after
    // logrotate's copytruncate has truncated the file under us.
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens (creating) `path` for appending.
    ///
    /// # Errors
    ///
    /// The I/O error when the file cannot be opened.
    pub(crate) fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_owned(),
            file: Arc::new(RwLock::new(open_append(path)?)),
        })
    }

    /// Opens the path again, so lines go to the new file after a rotation.
    ///
    /// # Errors
    ///
    /// The I/O error when the file cannot be opened; the old one stays in use.
    pub(crate) fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        *self.file.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// One log line's writer.
pub(crate) struct LogFileWriter(Arc<RwLock<File>>);

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.0.read().unwrap_or_else(|p| p.into_inner());
        (&*file).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self.file.clone())
    }
}

/// The trace spans' layer, when `[telemetry] otlp_endpoint` is set.
type Spans = Option<Box<dyn Layer<Registry> + Send + Sync>>;

/// The subscriber below the log lines' layer: the registry and the spans.
type Below = Layered<Spans, Registry>;

/// The handle that changes the log lines' level filter, once the subscriber
/// is installed with the configured level (`None` inside: `RUST_LOG` set it).
static LEVEL: OnceLock<Option<reload::Handle<EnvFilter, Below>>> = OnceLock::new();

/// Why the subscriber could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InitError {
    /// The log file cannot be opened.
    #[error("cannot open the log file: {0}")]
    LogFile(#[from] io::Error),
    /// The OTLP exporter cannot be built.
    #[error(transparent)]
    Tracing(#[from] TracingError),
}

/// What [`init`] set up: the log file, to reopen on SIGHUP, and the
/// exporter, to shut down last.
pub(crate) struct Telemetry {
    pub(crate) log_file: Option<LogFile>,
    pub(crate) tracing: Option<Tracing>,
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the
/// configured level; it never turns the log output to the trace spans.
///
/// # Errors
///
/// The I/O error when the log file cannot be opened, or why the OTLP
/// exporter cannot be built.
pub(crate) fn init(cfg: &LoggingConfig, traces: &TelemetryConfig) -> Result<Telemetry, InitError> {
    let from_env = EnvFilter::try_from_default_env().ok();
    let overridden = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let file = cfg.file.as_deref().map(LogFile::open).transpose()?;
    let (tracing, spans): (Option<Tracing>, Spans) = match otlp::layer(traces)? {
        Some((tracing, spans)) => (Some(tracing), Some(spans.boxed())),
        None => (None, None),
    };
    let (filter, handle) = reload::Layer::new(without_spans(filter));
    let lines = log_lines(file.as_ref(), cfg.format).with_filter(filter);
    // try_init: a second call (tests) keeps the first subscriber.
    if tracing_subscriber::registry()
        .with(spans)
        .with(lines)
        .try_init()
        .is_ok()
    {
        let _ = LEVEL.set((!overridden).then_some(handle));
    }
    Ok(Telemetry {
        log_file: file,
        tracing,
    })
}

/// `filter` with the trace spans' target turned off: they are exported,
/// never written as log lines.
fn without_spans(filter: EnvFilter) -> EnvFilter {
    match format!("{TARGET}=off").parse() {
        Ok(off) => filter.add_directive(off),
        Err(_) => filter,
    }
}

/// The layer writing log lines to `file` or stderr in `format`.
fn log_lines(file: Option<&LogFile>, format: LogFormat) -> Box<dyn Layer<Below> + Send + Sync> {
    let layer = tracing_subscriber::fmt::layer();
    match (file, format) {
        (Some(f), LogFormat::Json) => layer.json().with_writer(f.clone()).boxed(),
        (Some(f), LogFormat::Text) => layer.with_ansi(false).with_writer(f.clone()).boxed(),
        (None, LogFormat::Json) => layer.json().with_writer(io::stderr).boxed(),
        // Colour only for a person at a terminal: journald and redirects
        // would store the escape codes.
        (None, LogFormat::Text) => layer
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .boxed(),
    }
}

/// What [`set_level`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LevelChange {
    /// The new level filters from now on.
    Applied,
    /// `RUST_LOG` sets the level: the configured one is not used.
    Overridden,
    /// No subscriber of this crate is installed (an embedding program's).
    NotInstalled,
}

/// Changes the level filter to `level` (a validated `[logging] level`).
///
/// # Errors
///
/// The reason the filter could not be replaced.
pub(crate) fn set_level(level: &str) -> Result<LevelChange, String> {
    let Some(installed) = LEVEL.get() else {
        return Ok(LevelChange::NotInstalled);
    };
    let Some(handle) = installed else {
        return Ok(LevelChange::Overridden);
    };
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    handle
        .reload(without_spans(filter))
        .map_err(|e| e.to_string())?;
    Ok(LevelChange::Applied)
}

/// Reopens `file` on every SIGHUP (systemd's `ExecReload`, logrotate's
/// `postrotate`).
pub(crate) fn reopen_on_sighup(file: Option<LogFile>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("Cannot listen for SIGHUP; the log file will not be reopened");
            return;
        };
        while hup.recv().await.is_some() {
            match &file {
                Some(f) => match f.reopen() {
                    Ok(()) => {
                        tracing::info!(file = %f.path().display(), "Reopened the log file (SIGHUP)")
                    }
                    Err(e) => {
                        tracing::error!(file = %f.path().display(), error = %e, "Cannot reopen the log file; still writing to the old one")
                    }
                },
                None => tracing::info!("SIGHUP received; logs go to stderr, nothing to reopen"),
            }
        }
    });
    #[cfg(not(unix))]
    drop(file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_reopen_lines_go_to_the_new_file_and_none_to_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let log = LogFile::open(&path).unwrap();
        log.make_writer().write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log.1")).unwrap(),
            "one\n"
        );
    }

    #[test]
    fn writes_after_a_truncation_land_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.log");
        let log = LogFile::open(&path).unwrap();
        log.make_writer().write_all(b"first line\n").unwrap();
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        log.make_writer().write_all(b"x\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x\n");
    }
}
