//! Configuration errors: one enum for everything that can go wrong while loading a config.
//! Every variant names the key (or variable, or file) at fault and says what is wrong, so the
//! binary prints it once and exits 2.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from (so an error can name the thing to fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The TOML config file at this path.
    File(PathBuf),
    /// This environment variable (e.g. `DOLMEN_PORT`, `DOLMEN_READS__MAX_STALENESS_MS`).
    Env(String),
    /// This command-line flag (e.g. `--port`).
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why a configuration could not be loaded. Keys are written `section.key`
/// (e.g. `reads.max_staleness_ms`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The config file is not valid TOML, or a value in it has the wrong type; `message` is
    /// toml's, with the line and column.
    #[error("cannot parse config file {}: {}", path.display(), message.trim_end())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (line, column, the offending line).
        message: String,
    },

    /// A section or key that does not exist, in the file or as a `DOLMEN_<SECTION>__<KEY>`
    /// variable.
    #[error("unknown configuration key `{key}` (in {origin}); {hint}")]
    UnknownKey {
        /// The unknown key, `section.key`, or just `section` for an unknown section.
        key: String,
        /// The file or variable that used it.
        origin: Origin,
        /// How to fix it: the closest known name, or the known names.
        hint: String,
    },

    /// A value that breaks a rule (out of range, inconsistent with another key, ...).
    #[error("invalid `{key}`{}: {problem}", origin_suffix(origin.as_ref()))]
    Invalid {
        /// The key whose value is wrong, `section.key`.
        key: String,
        /// What is wrong, with the value (e.g. "must be > 0, got 0").
        problem: String,
        /// Where the value came from; `None` for a default or a `Config` built in code.
        origin: Option<Origin>,
    },

    /// An environment variable that is not a Dolmen setting, or whose value cannot be used.
    #[error("environment variable {var}: {problem}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn origin_suffix(origin: Option<&Origin>) -> String {
    match origin {
        Some(origin) => format!(" (set by {origin})"),
        None => String::new(),
    }
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] without an origin (filled in by `load`).
    pub(crate) fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            problem: problem.into(),
            origin: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_key_the_problem_and_the_origin() {
        let e = ConfigError::Invalid {
            key: "reads.max_staleness_ms".into(),
            problem: "must be > 0, got 0".into(),
            origin: Some(Origin::Env("DOLMEN_READS__MAX_STALENESS_MS".into())),
        };
        assert_eq!(
            e.to_string(),
            "invalid `reads.max_staleness_ms` (set by environment variable \
             DOLMEN_READS__MAX_STALENESS_MS): must be > 0, got 0"
        );
        let e = ConfigError::invalid("server.max_connections", "must be > 0, got 0");
        assert_eq!(
            e.to_string(),
            "invalid `server.max_connections`: must be > 0, got 0"
        );
        let e = ConfigError::UnknownKey {
            key: "reads.max_stalenes_ms".into(),
            origin: Origin::File("/etc/dolmen.toml".into()),
            hint: "did you mean `max_staleness_ms`?".into(),
        };
        assert_eq!(
            e.to_string(),
            "unknown configuration key `reads.max_stalenes_ms` (in config file \
             /etc/dolmen.toml); did you mean `max_staleness_ms`?"
        );
        assert_eq!(Origin::Flag("--port").to_string(), "flag --port");
    }
}
