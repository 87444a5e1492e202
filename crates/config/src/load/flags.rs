//! The command-line layer: [`Overrides`] (the flags of `dolmen serve`), the strongest of the
//! three; each flag's value is checked for its key and an error names the flag.

use std::path::PathBuf;

use toml::Value;

use super::schema::check_value;
use super::Layers;
use crate::{ConfigError, Mode, Origin};

/// Values given on the command line of `dolmen serve`; each `Some` beats the environment and
/// the file. `Default` is "no flags".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--host`: sets `server.host`.
    pub host: Option<String>,
    /// `--port`: sets `server.port` (`0` = ephemeral).
    pub port: Option<u16>,
    /// `--admin-port`: sets `server.admin_port` (`0` = ephemeral).
    pub admin_port: Option<u16>,
    /// `--data-dir`: sets `database.base_path`.
    pub data_dir: Option<PathBuf>,
    /// `--mode`: sets `deployment.mode`.
    pub mode: Option<Mode>,
    /// `--node-id`: sets `deployment.instance_id`.
    pub node_id: Option<u64>,
    /// `--column-families a,b,...`: sets `database.column_families`.
    pub column_families: Option<Vec<String>>,
    /// `--allow-fault-injection`: sets `faults.allow_injection`.
    pub allow_fault_injection: Option<bool>,
}

pub(super) fn apply_overrides(layers: &mut Layers, o: &Overrides) -> Result<(), ConfigError> {
    let mut flags: Vec<(&'static str, &str, &str, Value)> = Vec::new();
    if let Some(host) = &o.host {
        flags.push(("--host", "server", "host", Value::String(host.clone())));
    }
    if let Some(port) = o.port {
        flags.push(("--port", "server", "port", Value::Integer(port.into())));
    }
    if let Some(port) = o.admin_port {
        flags.push((
            "--admin-port",
            "server",
            "admin_port",
            Value::Integer(port.into()),
        ));
    }
    if let Some(dir) = &o.data_dir {
        let dir = dir.to_str().ok_or_else(|| ConfigError::Invalid {
            key: "database.base_path".to_owned(),
            problem: format!("{} is not valid UTF-8", dir.display()),
            origin: Some(Origin::Flag("--data-dir")),
        })?;
        flags.push((
            "--data-dir",
            "database",
            "base_path",
            Value::String(dir.to_owned()),
        ));
    }
    if let Some(mode) = o.mode {
        flags.push((
            "--mode",
            "deployment",
            "mode",
            Value::String(mode.as_str().to_owned()),
        ));
    }
    if let Some(id) = o.node_id {
        let id = u32::try_from(id).map_err(|_| ConfigError::Invalid {
            key: "deployment.instance_id".to_owned(),
            problem: format!("must be at most {}, got {id}", u32::MAX),
            origin: Some(Origin::Flag("--node-id")),
        })?;
        flags.push((
            "--node-id",
            "deployment",
            "instance_id",
            Value::Integer(id.into()),
        ));
    }
    if let Some(cfs) = &o.column_families {
        let cfs = cfs.iter().cloned().map(Value::String).collect();
        flags.push((
            "--column-families",
            "database",
            "column_families",
            Value::Array(cfs),
        ));
    }
    if let Some(allow) = o.allow_fault_injection {
        flags.push((
            "--allow-fault-injection",
            "faults",
            "allow_injection",
            Value::Boolean(allow),
        ));
    }
    for (flag, section, key, value) in flags {
        check_value(section, key, &value).map_err(|bad| ConfigError::Invalid {
            key: format!("{section}.{key}"),
            problem: bad.to_string(),
            origin: Some(Origin::Flag(flag)),
        })?;
        layers.set(section, key, value, Origin::Flag(flag));
    }
    Ok(())
}
