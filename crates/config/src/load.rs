//! Loading: merges the config file, the environment and the flags on one `toml::Table`,
//! remembering where each key came from, then deserializes once (serde fills the defaults).
//! Unknown keys and wrong types are caught per layer, so errors name the file line or variable.
//!
//! Environment variables (applied in this order, so a later one wins):
//! 1. `THRIFT_PORT` = `server.port` (the original server's variable);
//! 2. `DOLMEN_<SECTION>__<KEY>=<value>` for any key, e.g. `DOLMEN_READS__CONSISTENCY_LEVEL=stale`.
//!    The value is read as a TOML value (`200`, `true`, `["default","users"]`, `"x"`), falling
//!    back to the raw text; for a string key the raw text is always fine, and for a list key
//!    `a,b` means `["a","b"]`;
//! 3. `DOLMEN_HOST` (`server.host`), `DOLMEN_PORT` (`server.port`), `DOLMEN_ADMIN_PORT`
//!    (`server.admin_port`), `DOLMEN_DATA_DIR` (`database.base_path`).
//!
//! `DOLMEN_CONFIG` and `DOLMEN_LOG` belong to the binary and are skipped; any other `DOLMEN_*`
//! variable is an error, so a typo is not silently ignored. Other variables are ignored.

mod env;
mod flags;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{split_endpoint, Config, ConfigError, Mode, Origin};

pub use env::PASSTHROUGH_ENV;
pub use flags::Overrides;

use env::apply_env;
use flags::apply_overrides;
use schema::{schema, unknown_key};

/// In replicated mode, the default admin port is the Thrift port plus this (or a multiple of it,
/// up to `ADMIN_PORT_STEPS` times, when an endpoint already uses the port).
const ADMIN_PORT_OFFSET: u16 = 100;
const ADMIN_PORT_STEPS: u16 = 10;

/// The merged, not yet deserialized configuration.
#[derive(Default)]
pub(super) struct Layers {
    /// `section -> key -> value`, only the keys somebody set.
    table: Table,
    /// `"section.key"` -> who set it last. A key absent here has its default; this is also how
    /// an explicit `server.port` is told from the replicated-mode default.
    origins: HashMap<String, Origin>,
}

impl Layers {
    pub(super) fn set(&mut self, section: &str, key: &str, value: Value, origin: Origin) {
        self.origins.insert(format!("{section}.{key}"), origin);
        let entry = self
            .table
            .entry(section.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(keys) = entry {
            keys.insert(key.to_owned(), value);
        }
    }
}

/// [`Config::load`]: file, environment, flags, replicated port default, validation.
pub(super) fn load(
    path: Option<&Path>,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut layers = Layers::default();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        apply_file(&mut layers, &text, path)?;
    }
    apply_env(&mut layers, env)?;
    apply_overrides(&mut layers, overrides)?;
    finish(layers, path)
}

/// [`load`] of the file text `text` alone (no environment, no flags), as if read from `path`.
pub(super) fn load_text(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut layers = Layers::default();
    apply_file(&mut layers, text, path)?;
    finish(layers, Some(path))
}

/// Deserializes the merged layers, fills what depends on other keys, and validates.
fn finish(mut layers: Layers, path: Option<&Path>) -> Result<Config, ConfigError> {
    // Every key was type-checked as it was merged, so this only fails on a bug.
    let mut config: Config =
        Value::Table(layers.table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.map_or_else(|| PathBuf::from("<environment and flags>"), Path::to_owned),
                message: e.to_string(),
            })?;

    // Replicated mode: unless a port was given explicitly (at any layer, even with the default
    // value), the Thrift port is the one this node advertises in replica_endpoints. A bad entry
    // is left for validate() to report.
    if config.deployment.mode == Mode::Replicated && !layers.origins.contains_key("server.port") {
        let own = config
            .deployment
            .replica_endpoints
            .get(config.deployment.instance_id as usize);
        if let Some(Ok((_, port))) = own.map(|endpoint| split_endpoint(endpoint)) {
            config.server.port = port;
        }
    }
    // Replicated mode: unless given, the admin port is the Thrift port + 100 (9090 → 9190, the
    // standalone default), so members sharing a host from one static list do not collide; if
    // a configured endpoint already uses that port, the next step of 100 that none uses.
    if config.deployment.mode == Mode::Replicated
        && !layers.origins.contains_key("server.admin_port")
        && config.server.port != 0
    {
        let taken: Vec<u16> = config
            .deployment
            .replica_endpoints
            .iter()
            .chain(&config.consensus.endpoints)
            .filter_map(|endpoint| split_endpoint(endpoint).ok().map(|(_, port)| port))
            .chain([config.server.port])
            .collect();
        let free = (1..=ADMIN_PORT_STEPS)
            .filter_map(|step| config.server.port.checked_add(step * ADMIN_PORT_OFFSET))
            .find(|port| !taken.contains(port));
        if let Some(admin) = free {
            config.server.admin_port = admin;
        }
    }
    crate::legacy::apply(&mut config, &mut layers.origins);

    config.validate().map_err(|e| match e {
        ConfigError::Invalid {
            key,
            problem,
            origin: None,
        } => ConfigError::Invalid {
            // A list entry (`sharding.split_keys[2]`) came from where its list was set.
            origin: layers
                .origins
                .get(key.split_once('[').map_or(key.as_str(), |(list, _)| list))
                .cloned(),
            key,
            problem,
        },
        other => other,
    })?;
    Ok(config)
}

fn apply_file(layers: &mut Layers, text: &str, path: &Path) -> Result<(), ConfigError> {
    let parse_error = |e: toml::de::Error| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let table: Table = text.parse().map_err(parse_error)?;
    let origin = Origin::File(path.to_owned());

    // Unknown names first, reported as `section.key` with a suggestion.
    for (section, value) in &table {
        let Some(known) = schema().get(section).and_then(Value::as_table) else {
            return Err(unknown_key(section, None, origin));
        };
        for key in value.as_table().into_iter().flat_map(Table::keys) {
            if !known.contains_key(key) {
                return Err(unknown_key(section, Some(key), origin));
            }
        }
    }
    // Then wrong types (and a section that is not a table), with toml's line and column.
    toml::from_str::<Config>(text).map_err(parse_error)?;

    for (section, value) in table {
        if let Value::Table(keys) = value {
            for (key, value) in keys {
                layers.set(&section, &key, value, origin.clone());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
