//! Log output of the binary: text or JSON lines on stderr, colour only on a terminal (and not
//! with `NO_COLOR` set, <https://no-color.org>), and a
//! level (an `EnvFilter` directive such as `info` or `wsrelay=debug,warn`) that a configuration
//! reload can change while the relay runs.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use wsrelay::config::LogFormat;

/// Changes the log level of the running process.
pub struct LogLevel {
    set: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>,
    current: std::sync::Mutex<String>,
}

impl LogLevel {
    /// Applies `directive` if it differs from the one in force; returns whether it changed.
    pub fn apply(&self, directive: &str) -> Result<bool, String> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if *current == directive {
            return Ok(false);
        }
        (self.set)(parse(directive)?)?;
        *current = directive.to_string();
        Ok(true)
    }
}

/// Parses a level directive (the `RUST_LOG` syntax).
pub fn parse(directive: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(directive).map_err(|e| format!("log-level {directive:?}: {e}"))
}

/// Colour codes only for a terminal (a log file or journald gets plain text), and not when the
/// user set `NO_COLOR` to a non-empty value (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber; returns the handle that changes its level.
pub fn init(format: LogFormat, filter: EnvFilter, directive: &str) -> LogLevel {
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    let set: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync> = match format {
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
    };
    LogLevel {
        set,
        current: std::sync::Mutex::new(directive.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
        assert!(!colour(false, Some("1".into())));
    }
}
