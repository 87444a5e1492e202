//! Node configs as [`dolmen_config::Config`] values: the replicated-cluster fields every local
//! cluster sets, `[section] key = value` overrides checked against the schema, and rendering to
//! the TOML a node reads (only what differs from the defaults, plus `server.port`).

use std::path::Path;

use dolmen_config::{Bootstrap, Config, Mode};
use toml::{Table, Value};

use crate::ports::NodeAddrs;

/// Why a config could not be changed or rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// `[section] key = value` does not fit the schema (unknown key, wrong type).
    #[error("cannot set `{section}.{key}` = {value}: {reason}")]
    BadSetting {
        /// The section.
        section: String,
        /// The key.
        key: String,
        /// The value given.
        value: Value,
        /// The schema's objection.
        reason: String,
    },
    /// The config does not serialize (a bug in the schema).
    #[error("the config does not serialize to TOML: {0}")]
    Serialize(String),
    /// The config file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The config of node `id` of a replicated cluster whose members (indexed by instance id) have
/// the addresses `members`, with its data under `data`: mode, id, both endpoint lists, its own
/// ports on 127.0.0.1, and `bootstrap = true` on node 0 only (`false` on the others).
/// Everything else has its default.
///
/// # Panics
/// When `id` is not an index of `members` (a harness bug).
pub fn replicated_node(id: usize, members: &[NodeAddrs], data: &Path) -> Config {
    let own = members
        .get(id)
        .unwrap_or_else(|| panic!("node {id} is not among the {} members", members.len()));
    let mut c = Config::default();
    c.deployment.mode = Mode::Replicated;
    c.deployment.instance_id = u32::try_from(id).expect("a node index fits u32");
    c.deployment.replica_endpoints = members.iter().map(|a| a.thrift.to_string()).collect();
    c.consensus.endpoints = members.iter().map(|a| a.peer.to_string()).collect();
    // Node 0 alone initializes, so every harness cluster starts the same way; the others
    // wait to be reached rather than form the cluster from the list themselves.
    c.consensus.bootstrap = if id == 0 {
        Bootstrap::Init
    } else {
        Bootstrap::Wait
    };
    c.server.host = own.thrift.ip().to_string();
    c.server.port = own.thrift.port();
    c.server.admin_port = own.admin.port();
    c.database.base_path = data.to_owned();
    c
}

/// Sets `[section] key = value` on `config`, checked against the schema exactly as the server
/// reads it (an unknown key or a wrong type is an error).
///
/// # Errors
/// [`RenderError::BadSetting`] naming the key and the schema's objection.
pub fn set(config: &mut Config, section: &str, key: &str, value: Value) -> Result<(), RenderError> {
    let bad = |reason: String| RenderError::BadSetting {
        section: section.to_owned(),
        key: key.to_owned(),
        value: value.clone(),
        reason,
    };
    let mut table = to_table(config)?;
    let entry = table
        .entry(section.to_owned())
        .or_insert_with(|| Value::Table(Table::new()));
    let Value::Table(keys) = entry else {
        return Err(bad(format!("[{section}] is not a table")));
    };
    keys.insert(key.to_owned(), value.clone());
    *config = Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().trim().to_owned()))?;
    Ok(())
}

/// The TOML text of `config`: every key that differs from [`Config::default`], plus
/// `server.port` and `server.admin_port` always (in replicated mode an absent port means "the
/// one in `replica_endpoints`" and an absent admin port "that + 100", so the ports a harness
/// chose are always written).
///
/// # Errors
/// When the config does not serialize.
pub fn render(config: &Config) -> Result<String, RenderError> {
    let defaults = to_table(&Config::default())?;
    let mut table = to_table(config)?;
    for (section, keys) in &mut table {
        let (Value::Table(keys), Some(Value::Table(default_keys))) = (keys, defaults.get(section))
        else {
            continue;
        };
        keys.retain(|key, value| {
            (section == "server" && (key == "port" || key == "admin_port"))
                || default_keys.get(key) != Some(value)
        });
    }
    table.retain(|_, keys| keys.as_table().is_none_or(|k| !k.is_empty()));
    toml::to_string(&table).map_err(|e| RenderError::Serialize(e.to_string()))
}

/// [`render`]s `config` into `path` (after `header`, e.g. a comment; may be empty).
///
/// # Errors
/// When it does not serialize or the file cannot be written.
pub fn write(path: &Path, header: &str, config: &Config) -> Result<(), RenderError> {
    let text = format!("{header}{}", render(config)?);
    std::fs::write(path, text).map_err(|source| RenderError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn to_table(config: &Config) -> Result<Table, RenderError> {
    match Value::try_from(config) {
        Ok(Value::Table(t)) => Ok(t),
        Ok(other) => Err(RenderError::Serialize(format!("not a table: {other}"))),
        Err(e) => Err(RenderError::Serialize(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ports::loopback;

    fn addrs() -> Vec<NodeAddrs> {
        (0..3u16)
            .map(|i| NodeAddrs {
                thrift: loopback(20_000 + i),
                peer: loopback(21_000 + i),
                admin: loopback(22_000 + i),
            })
            .collect()
    }

    #[test]
    fn a_rendered_node_config_loads_back_to_the_same_config() {
        let mut c = replicated_node(1, &addrs(), Path::new("/tmp/x/data-1"));
        set(
            &mut c,
            "mvcc",
            "retention_window_ms",
            Value::Integer(600_000),
        )
        .unwrap();
        let text = render(&c).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let t: Table = toml::from_str(&text).unwrap();
        assert_eq!(t["deployment"]["instance_id"].as_integer(), Some(1));
        assert_eq!(
            t["consensus"]["endpoints"].as_array().map(Vec::len),
            Some(3)
        );
        assert_eq!(t["server"]["port"].as_integer(), Some(20_001));
        assert_eq!(t["server"]["admin_port"].as_integer(), Some(22_001));
        assert_eq!(t["consensus"]["bootstrap"].as_bool(), Some(false));
        assert!(t.get("faults").is_none(), "untouched sections are left out");
        let c0 = replicated_node(0, &addrs(), Path::new("/tmp/x/data-0"));
        let t: Table = toml::from_str(&render(&c0).unwrap()).unwrap();
        assert_eq!(t["consensus"]["bootstrap"].as_bool(), Some(true));
    }

    #[test]
    fn the_port_is_written_even_at_its_default() {
        let c = Config::default();
        let t: Table = toml::from_str(&render(&c).unwrap()).unwrap();
        assert_eq!(t["server"]["port"].as_integer(), Some(9090));
        assert_eq!(t.len(), 1, "only [server] port: {t:?}");
    }

    #[test]
    fn set_refuses_unknown_keys_and_wrong_types() {
        let mut c = Config::default();
        set(
            &mut c,
            "faults",
            "allow_network_faults",
            Value::Boolean(true),
        )
        .unwrap();
        assert!(c.faults.allow_network_faults);
        let e = set(
            &mut c,
            "faults",
            "allow_netwrk_faults",
            Value::Boolean(true),
        )
        .unwrap_err();
        assert!(e.to_string().contains("faults.allow_netwrk_faults"), "{e}");
        let e = set(&mut c, "mvcc", "retention_window_ms", Value::from("long")).unwrap_err();
        assert!(matches!(e, RenderError::BadSetting { .. }), "{e}");
        assert_eq!(c.database.base_path, PathBuf::from("./data"));
    }
}
