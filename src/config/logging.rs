//! `[logging]`: the level or filter directive, text or JSON lines, and the
//! log file (reopened on SIGHUP) instead of stderr.

use std::path::PathBuf;

use toml::Table;

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "logging";

/// The keys of `[logging]`.
pub(super) const KNOWN: &[&str] = &["level", "format", "file"];

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[logging]`.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// A `tracing` filter directive such as `info` or `warn,zulip_event_listeners=debug`.
    pub level: String,
    /// Text or JSON lines.
    pub format: LogFormat,
    /// Append to this file (reopened on SIGHUP) instead of writing to stderr.
    pub file: Option<PathBuf>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
            file: None,
        }
    }
}

/// Reads `[logging]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut LoggingConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "level" => {
                if let Some(level) = r.string(&key, v) {
                    match parse_level(&level) {
                        Ok(l) => out.level = l,
                        Err(e) => r.problem(format!(
                            "`{key}` must be a level (error, warn, info, debug, trace; Python's WARNING and CRITICAL are accepted) or a filter directive such as \"info,sqlx=warn\", got `{level}`{e}"
                        )),
                    }
                }
            }
            "format" => match r.string(&key, v).as_deref() {
                Some("text") => out.format = LogFormat::Text,
                Some("json") => out.format = LogFormat::Json,
                Some(other) => r.problem(format!(
                    "`{key}` must be \"text\" or \"json\", got `{other}`"
                )),
                None => {}
            },
            "file" => out.file = r.string(&key, v).map(PathBuf::from),
            _ => r.unknown_key(k),
        }
    }
}
/// A level name (Python's `WARNING`/`CRITICAL` included) or an `EnvFilter`
/// directive, as the directive to use.
fn parse_level(level: &str) -> Result<String, String> {
    let lower = level.trim().to_lowercase();
    let simple = match lower.as_str() {
        "warning" => Some("warn"),
        "critical" | "fatal" => Some("error"),
        "off" | "error" | "warn" | "info" | "debug" | "trace" => Some(lower.as_str()),
        _ => None,
    };
    if let Some(s) = simple {
        return Ok(s.to_owned());
    }
    // A bare word would be taken as a target name and silently log everything.
    if !lower.contains('=') && !lower.contains(',') {
        return Err(String::new());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(&lower)
        .map(|_| lower.clone())
        .map_err(|e| format!(": {e}"))
}
