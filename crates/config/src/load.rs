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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use toml::{Table, Value};

use super::{split_endpoint, Config, ConfigError, Mode, Origin};

/// `DOLMEN_*` variables that are read by the binary, not by [`Config::load`], which skips them.
pub const PASSTHROUGH_ENV: &[&str] = &["DOLMEN_CONFIG", "DOLMEN_LOG", "DOLMEN_ADDR", "DOLMEN_BIN"];

/// The prefix of every Dolmen environment variable.
const ENV_PREFIX: &str = "DOLMEN_";

/// Separates section and key in `DOLMEN_<SECTION>__<KEY>`.
const ENV_SEPARATOR: &str = "__";

/// The original server's port variable, weaker than every `DOLMEN_*` one.
const THRIFT_PORT: &str = "THRIFT_PORT";

/// Shorthand variables: (variable, section, key). Applied after the generic form.
const NAMED_ENV: [(&str, &str, &str); 4] = [
    ("DOLMEN_HOST", "server", "host"),
    ("DOLMEN_PORT", "server", "port"),
    ("DOLMEN_ADMIN_PORT", "server", "admin_port"),
    ("DOLMEN_DATA_DIR", "database", "base_path"),
];

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

/// The merged, not yet deserialized configuration.
#[derive(Default)]
struct Layers {
    /// `section -> key -> value`, only the keys somebody set.
    table: Table,
    /// `"section.key"` -> who set it last. A key absent here has its default; this is also how
    /// an explicit `server.port` is told from the replicated-mode default.
    origins: HashMap<String, Origin>,
}

impl Layers {
    fn set(&mut self, section: &str, key: &str, value: Value, origin: Origin) {
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
        apply_file(&mut layers, path)?;
    }
    apply_env(&mut layers, env)?;
    apply_overrides(&mut layers, overrides)?;

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

    config.validate().map_err(|e| match e {
        ConfigError::Invalid {
            key,
            problem,
            origin: None,
        } => ConfigError::Invalid {
            origin: layers.origins.get(&key).cloned(),
            key,
            problem,
        },
        other => other,
    })?;
    Ok(config)
}

fn apply_file(layers: &mut Layers, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
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
    toml::from_str::<Config>(&text).map_err(parse_error)?;

    for (section, value) in table {
        if let Value::Table(keys) = value {
            for (key, value) in keys {
                layers.set(&section, &key, value, origin.clone());
            }
        }
    }
    Ok(())
}

fn apply_env(layers: &mut Layers, env: &[(String, String)]) -> Result<(), ConfigError> {
    let mut thrift_port = None;
    let mut generic = Vec::new();
    let mut named: [Option<&str>; NAMED_ENV.len()] = [None; NAMED_ENV.len()];
    for (var, value) in env {
        if var == THRIFT_PORT {
            thrift_port = Some(value.as_str());
            continue;
        }
        let Some(name) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if PASSTHROUGH_ENV.contains(&var.as_str()) {
            continue;
        }
        if let Some((section, key)) = name.split_once(ENV_SEPARATOR) {
            generic.push((
                var.as_str(),
                section.to_ascii_lowercase(),
                key.to_ascii_lowercase(),
                value.as_str(),
            ));
        } else if let Some(i) = NAMED_ENV.iter().position(|(named, ..)| named == var) {
            named[i] = Some(value.as_str());
        } else {
            return Err(ConfigError::Env {
                var: var.clone(),
                problem: unknown_var_problem(var),
            });
        }
    }

    if let Some(raw) = thrift_port {
        set_from_env(layers, THRIFT_PORT, "server", "port", raw)?;
    }
    for (var, section, key, raw) in generic {
        set_from_env(layers, var, &section, &key, raw)?;
    }
    for ((var, section, key), raw) in NAMED_ENV.iter().zip(named) {
        if let Some(raw) = raw {
            set_from_env(layers, var, section, key, raw)?;
        }
    }
    Ok(())
}

fn set_from_env(
    layers: &mut Layers,
    var: &str,
    section: &str,
    key: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let origin = Origin::Env(var.to_owned());
    let Some(default) = key_default(section, key) else {
        return Err(unknown_key(section, Some(key), origin));
    };
    let value = env_value(raw, default);
    check_value(section, key, &value).map_err(|problem| ConfigError::Env {
        var: var.to_owned(),
        problem: format!("{raw:?} is not a valid `{section}.{key}`: {problem}"),
    })?;
    layers.set(section, key, value, origin);
    Ok(())
}

/// Reads a variable's text as a value for a key whose default is `default`.
fn env_value(raw: &str, default: &Value) -> Value {
    let parsed = parse_toml_value(raw);
    match (default, parsed) {
        (Value::String(_), Some(Value::String(s))) => Value::String(s),
        (Value::String(_), _) => Value::String(raw.to_owned()),
        (Value::Array(_), Some(array @ Value::Array(_))) => array,
        (Value::Array(_), _) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        ),
        (_, Some(value)) => value,
        (_, None) => Value::String(raw.to_owned()),
    }
}

/// `raw` as a TOML value (`200`, `true`, `"x"`, `[1, 2]`), or `None` if it is not one.
fn parse_toml_value(raw: &str) -> Option<Value> {
    let mut table: Table = format!("v = {raw}").parse().ok()?;
    table.remove("v")
}

fn apply_overrides(layers: &mut Layers, o: &Overrides) -> Result<(), ConfigError> {
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
        check_value(section, key, &value).map_err(|problem| ConfigError::Invalid {
            key: format!("{section}.{key}"),
            problem,
            origin: Some(Origin::Flag(flag)),
        })?;
        layers.set(section, key, value, Origin::Flag(flag));
    }
    Ok(())
}

/// Whether `value` deserializes as `section.key` (every other key keeps its default, so an
/// error can only be about this one).
fn check_value(section: &str, key: &str, value: &Value) -> Result<(), String> {
    let mut keys = Table::new();
    keys.insert(key.to_owned(), value.clone());
    let mut sections = Table::new();
    sections.insert(section.to_owned(), Value::Table(keys));
    Value::Table(sections)
        .try_into::<Config>()
        .map(drop)
        .map_err(|e| e.message().trim().to_owned())
}

/// Every section and key, with its default value: the serialized [`Config::default`].
fn schema() -> &'static Table {
    static SCHEMA: OnceLock<Table> = OnceLock::new();
    SCHEMA.get_or_init(|| match Value::try_from(Config::default()) {
        Ok(Value::Table(table)) => table,
        other => panic!("the default Config must serialize to a TOML table, got {other:?}"),
    })
}

/// The default value of `section.key`, or `None` if there is no such key.
fn key_default(section: &str, key: &str) -> Option<&'static Value> {
    schema().get(section)?.as_table()?.get(key)
}

/// An [`ConfigError::UnknownKey`] for `section` (when `key` is `None`) or `section.key`, with
/// a hint spelled for the origin (a TOML name or an environment variable).
fn unknown_key(section: &str, key: Option<&str>, origin: Origin) -> ConfigError {
    let as_env = matches!(origin, Origin::Env(_));
    let schema = schema();
    let spell = |section: &str, key: &str| {
        if as_env {
            env_var_name(section, key)
        } else {
            format!("`{section}.{key}`")
        }
    };
    let hint = match schema.get(section).and_then(Value::as_table) {
        None => {
            let known = join(schema.keys());
            match closest(section, schema.keys()) {
                Some(near) => match key.filter(|key| key_default(near, key).is_some()) {
                    Some(key) => format!("did you mean {}?", spell(near, key)),
                    None if as_env => format!(
                        "did you mean {ENV_PREFIX}{}{ENV_SEPARATOR}<KEY>? Keys in [{near}] are: {}",
                        near.to_ascii_uppercase(),
                        join(schema[near].as_table().into_iter().flat_map(Table::keys))
                    ),
                    None => format!("did you mean section [{near}]? Sections are: {known}"),
                },
                None => format!("sections are: {known}"),
            }
        }
        Some(keys) => match closest(key.unwrap_or_default(), keys.keys()) {
            Some(near) => format!("did you mean {}?", spell(section, near)),
            None => format!("keys in [{section}] are: {}", join(keys.keys())),
        },
    };
    let key = match key {
        Some(key) => format!("{section}.{key}"),
        None => section.to_owned(),
    };
    ConfigError::UnknownKey { key, origin, hint }
}

fn unknown_var_problem(var: &str) -> String {
    let named = NAMED_ENV
        .iter()
        .map(|(var, ..)| *var)
        .chain(PASSTHROUGH_ENV.iter().copied());
    let stripped = var.strip_prefix(ENV_PREFIX).unwrap_or(var);
    let near = closest(
        stripped,
        named
            .clone()
            .map(|n| n.strip_prefix(ENV_PREFIX).unwrap_or(n)),
    );
    let hint = match near {
        Some(near) => format!("did you mean {ENV_PREFIX}{near}? "),
        None => String::new(),
    };
    format!(
        "not a Dolmen setting; {hint}Dolmen reads {}, and DOLMEN_<SECTION>__<KEY> for any \
         config key (e.g. DOLMEN_READS__MAX_STALENESS_MS)",
        join(named)
    )
}

fn env_var_name(section: &str, key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}{ENV_SEPARATOR}{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

fn join<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    names
        .into_iter()
        .map(|name| name.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate nearest to `name` by edit distance, if it is near enough to be a typo.
fn closest<S: AsRef<str>>(name: &str, candidates: impl IntoIterator<Item = S>) -> Option<S> {
    let limit = (name.len() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c.as_ref()), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Edit distance over bytes (names are ASCII), counting a swap of neighbours as one edit
/// (optimal string alignment), so `prot` is one edit from `port`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsistencyLevel;
    use std::io::Write;

    /// The example of docs/WIRE.md §5, verbatim.
    const WIRE_EXAMPLE: &str = r#"
[deployment]
mode = "replicated"            # or "standalone" (default)
instance_id = 0                # this node's id (index into replica_endpoints)
replica_endpoints = ["127.0.0.1:9090", "127.0.0.1:9091", "127.0.0.1:9092"]   # client (Thrift) addresses

[consensus]
algorithm = "raft"
endpoints = ["127.0.0.1:7090", "127.0.0.1:7091", "127.0.0.1:7092"]           # peer (gRPC) addresses
election_timeout_ms = 1000
heartbeat_interval_ms = 200
max_batch_size = 100
max_outstanding_proposals = 1000

[reads]
consistency_level = "linearizable"   # "lease", "stale"
allow_stale_reads = false
max_staleness_ms = 1000

[database]
base_path = "./data"
column_families = ["default"]

[rocksdb]
write_buffer_size_mb = 64
max_write_buffer_number = 4
block_cache_size_mb = 512
"#;

    const REPLICATED_NODE_1: &str = r#"
[deployment]
mode = "replicated"
instance_id = 1
replica_endpoints = ["127.0.0.1:9090", "127.0.0.1:9091", "127.0.0.1:9092"]
[consensus]
endpoints = ["127.0.0.1:7090", "127.0.0.1:7091", "127.0.0.1:7092"]
"#;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_file(text: &str) -> Result<Config, ConfigError> {
        let f = file(text);
        Config::load(Some(f.path()), &[], &Overrides::default())
    }

    fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(None, &env(vars), &Overrides::default())
    }

    #[test]
    fn nothing_given_loads_the_defaults() {
        let c = Config::load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(load_file("").unwrap(), Config::default());
    }

    #[test]
    fn the_wire_example_parses() {
        let c = load_file(WIRE_EXAMPLE).unwrap();
        assert_eq!(c.deployment.mode, Mode::Replicated);
        assert_eq!(c.deployment.replica_endpoints.len(), 3);
        assert_eq!(c.consensus.endpoints[2], "127.0.0.1:7092");
        assert_eq!(c.reads.consistency_level, ConsistencyLevel::Linearizable);
        assert_eq!(c.server.port, 9090);
        assert_eq!(c.node_id(), 0);
        let mut expected = c.clone();
        expected.deployment = Config::default().deployment;
        expected.consensus.endpoints.clear();
        assert_eq!(
            expected,
            Config::default(),
            "every other value is the default"
        );
    }

    #[test]
    fn the_dolmen_sections_parse() {
        let c = load_file(
            r#"
[server]
host = "0.0.0.0"
port = 0
admin_port = 0
max_connections = 10
max_message_bytes = 2097152
[mvcc]
retention_window_ms = 200
compaction_interval_ms = 50
future_version_wait_ms = 0
[faults]
allow_injection = true
"#,
        )
        .unwrap();
        assert_eq!(c.server.host, "0.0.0.0");
        assert_eq!((c.server.port, c.server.admin_port), (0, 0));
        assert_eq!(c.server.max_connections, 10);
        assert_eq!(c.server.max_message_bytes, 2 << 20);
        assert_eq!(c.mvcc.retention_window_ms, 200);
        assert_eq!(c.mvcc.compaction_interval_ms, 50);
        assert_eq!(c.mvcc.future_version_wait_ms, 0);
        assert!(c.faults.allow_injection);
    }

    #[test]
    fn unknown_key_in_the_file_is_named_with_its_section() {
        let f = file("[reads]\nmax_stalenes_ms = 5\n");
        let err = Config::load(Some(f.path()), &[], &Overrides::default()).unwrap_err();
        let text = err.to_string();
        match err {
            ConfigError::UnknownKey { key, origin, hint } => {
                assert_eq!(key, "reads.max_stalenes_ms");
                assert_eq!(origin, Origin::File(f.path().to_owned()));
                assert_eq!(hint, "did you mean `reads.max_staleness_ms`?");
            }
            other => panic!("{other:?}"),
        }
        assert!(text.contains("`reads.max_stalenes_ms`"), "{text}");

        let err = load_file("[reads]\nbogus = 1\n").unwrap_err();
        assert!(
            err.to_string().contains(
                "keys in [reads] are: allow_stale_reads, consistency_level, max_staleness_ms"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_section_in_the_file_is_named() {
        match load_file("[read]\nmax_staleness_ms = 5\n").unwrap_err() {
            ConfigError::UnknownKey { key, hint, .. } => {
                assert_eq!(key, "read");
                assert!(hint.starts_with("did you mean section [reads]?"), "{hint}");
            }
            other => panic!("{other:?}"),
        }
        match load_file("port = 9090\n").unwrap_err() {
            ConfigError::UnknownKey { key, hint, .. } => {
                assert_eq!(key, "port");
                assert!(hint.contains("sections are: consensus, database"), "{hint}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_and_type_errors_in_the_file_give_line_and_column() {
        for (text, expect) in [
            ("[server\nport = 1\n", "line 1"),
            ("[server]\nport = \"abc\"\n", "line 2, column 8"),
            ("[server]\nport = 70000\n", "line 2"),
            (
                "[reads]\nconsistency_level = \"strong\"\n",
                "unknown variant `strong`",
            ),
            ("reads = 5\n", "line 1"),
        ] {
            match load_file(text).unwrap_err() {
                ConfigError::Parse { message, .. } => {
                    assert!(message.contains(expect), "{text:?}: {message}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let path = Path::new("/nonexistent/dolmen.toml");
        match Config::load(Some(path), &[], &Overrides::default()).unwrap_err() {
            err @ ConfigError::Io { .. } => {
                assert_eq!(
                    err.to_string(),
                    "cannot read config file /nonexistent/dolmen.toml"
                );
                assert!(std::error::Error::source(&err).is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_key_in_the_env_names_the_variable() {
        match load_env(&[("DOLMEN_READS__BOGUS", "1")]).unwrap_err() {
            err @ ConfigError::UnknownKey { .. } => {
                let text = err.to_string();
                assert!(text.contains("`reads.bogus`"), "{text}");
                assert!(
                    text.contains("environment variable DOLMEN_READS__BOGUS"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        match load_env(&[("DOLMEN_READ__MAX_STALENESS_MS", "1")]).unwrap_err() {
            ConfigError::UnknownKey { key, origin, hint } => {
                assert_eq!(key, "read.max_staleness_ms");
                assert_eq!(origin, Origin::Env("DOLMEN_READ__MAX_STALENESS_MS".into()));
                assert_eq!(hint, "did you mean DOLMEN_READS__MAX_STALENESS_MS?");
            }
            other => panic!("{other:?}"),
        }
        match load_env(&[("DOLMEN_MVCC__RETENTION_WINDOW", "1")]).unwrap_err() {
            ConfigError::UnknownKey { hint, .. } => {
                assert_eq!(hint, "did you mean DOLMEN_MVCC__RETENTION_WINDOW_MS?")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_dolmen_variables_are_errors_and_others_are_ignored() {
        match load_env(&[("DOLMEN_PROT", "9091")]).unwrap_err() {
            ConfigError::Env { var, problem } => {
                assert_eq!(var, "DOLMEN_PROT");
                assert!(problem.contains("did you mean DOLMEN_PORT?"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        let c = load_env(&[
            ("DOLMEN_CONFIG", "/does/not/matter.toml"),
            ("DOLMEN_LOG", "debug"),
            ("PATH", "/bin"),
            ("PORT", "1"),
            ("dolmen_port", "1"),
        ])
        .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn env_values_of_the_wrong_type_name_the_variable() {
        for (var, value, expect) in [
            ("DOLMEN_PORT", "abc", "\"abc\" is not a valid `server.port`"),
            ("THRIFT_PORT", "70000", "`server.port`"),
            (
                "DOLMEN_READS__CONSISTENCY_LEVEL",
                "strong",
                "unknown variant `strong`",
            ),
            (
                "DOLMEN_MVCC__RETENTION_WINDOW_MS",
                "-1",
                "`mvcc.retention_window_ms`",
            ),
            (
                "DOLMEN_FAULTS__ALLOW_INJECTION",
                "yes",
                "`faults.allow_injection`",
            ),
        ] {
            match load_env(&[(var, value)]).unwrap_err() {
                ConfigError::Env { var: got, problem } => {
                    assert_eq!(got, var);
                    assert!(problem.contains(expect), "{var}: {problem}");
                }
                other => panic!("{var}: {other:?}"),
            }
        }
    }

    #[test]
    fn generic_env_sets_lists_enums_numbers_and_strings() {
        let c = load_env(&[
            ("DOLMEN_READS__CONSISTENCY_LEVEL", "stale"),
            ("DOLMEN_DATABASE__COLUMN_FAMILIES", r#"["default","users"]"#),
            ("DOLMEN_MVCC__RETENTION_WINDOW_MS", "200"),
            ("DOLMEN_FAULTS__ALLOW_INJECTION", "true"),
            ("DOLMEN_SERVER__HOST", "0.0.0.0"),
            ("DOLMEN_DATABASE__BASE_PATH", "/tmp/dolmen data"),
        ])
        .unwrap();
        assert_eq!(c.reads.consistency_level, ConsistencyLevel::Stale);
        assert_eq!(c.database.column_families, ["default", "users"]);
        assert_eq!(c.mvcc.retention_window_ms, 200);
        assert!(c.faults.allow_injection);
        assert_eq!(c.server.host, "0.0.0.0");
        assert_eq!(c.data_dir(), PathBuf::from("/tmp/dolmen data"));

        // Quoted TOML strings, comma lists and lower-case names work too.
        let c = load_env(&[
            ("DOLMEN_READS__CONSISTENCY_LEVEL", "\"lease\""),
            ("DOLMEN_DATABASE__COLUMN_FAMILIES", "default, users,orders"),
            ("DOLMEN_server__host", "\"::1\""),
        ])
        .unwrap();
        assert_eq!(c.reads.consistency_level, ConsistencyLevel::Lease);
        assert_eq!(c.database.column_families, ["default", "users", "orders"]);
        assert_eq!(c.server.host, "::1");
    }

    #[test]
    fn named_env_variables_set_their_keys() {
        let c = load_env(&[
            ("DOLMEN_HOST", "0.0.0.0"),
            ("DOLMEN_PORT", "0"),
            ("DOLMEN_ADMIN_PORT", "9999"),
            ("DOLMEN_DATA_DIR", "/var/lib/dolmen"),
        ])
        .unwrap();
        assert_eq!(c.server.host, "0.0.0.0");
        assert_eq!(c.server.port, 0);
        assert_eq!(c.server.admin_port, 9999);
        assert_eq!(c.data_dir(), PathBuf::from("/var/lib/dolmen"));
    }

    #[test]
    fn dolmen_port_beats_thrift_port_in_any_order() {
        assert_eq!(
            load_env(&[("THRIFT_PORT", "9500")]).unwrap().server.port,
            9500
        );
        for vars in [
            [("THRIFT_PORT", "9500"), ("DOLMEN_PORT", "9600")],
            [("DOLMEN_PORT", "9600"), ("THRIFT_PORT", "9500")],
        ] {
            assert_eq!(load_env(&vars).unwrap().server.port, 9600);
        }
        // The generic form beats THRIFT_PORT too; the named shorthand beats the generic form.
        let vars = [("DOLMEN_SERVER__PORT", "9700"), ("THRIFT_PORT", "9500")];
        assert_eq!(load_env(&vars).unwrap().server.port, 9700);
        let vars = [("DOLMEN_PORT", "9600"), ("DOLMEN_SERVER__PORT", "9700")];
        assert_eq!(load_env(&vars).unwrap().server.port, 9600);
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let f = file(
            r#"
[server]
host = "10.0.0.1"
port = 1000
[database]
base_path = "/from/file"
column_families = ["default", "file"]
[reads]
max_staleness_ms = 111
"#,
        );
        let vars = env(&[
            ("DOLMEN_PORT", "2000"),
            ("DOLMEN_DATA_DIR", "/from/env"),
            ("DOLMEN_DATABASE__COLUMN_FAMILIES", "default,env"),
            ("DOLMEN_DEPLOYMENT__INSTANCE_ID", "4"),
        ]);
        let flags = Overrides {
            port: Some(3000),
            column_families: Some(vec!["default".into(), "flag".into()]),
            ..Overrides::default()
        };

        let none = Overrides::default();
        let c = Config::load(None, &[], &none).unwrap();
        assert_eq!(c.server.port, 9090);
        let c = Config::load(Some(f.path()), &[], &none).unwrap();
        assert_eq!(c.server.port, 1000);
        assert_eq!(c.data_dir(), PathBuf::from("/from/file"));
        let c = Config::load(Some(f.path()), &vars, &none).unwrap();
        assert_eq!(c.server.port, 2000);
        assert_eq!(c.data_dir(), PathBuf::from("/from/env"));
        assert_eq!(c.database.column_families, ["default", "env"]);
        let c = Config::load(Some(f.path()), &vars, &flags).unwrap();
        assert_eq!(c.server.port, 3000);
        assert_eq!(c.database.column_families, ["default", "flag"]);
        // Keys nobody overrode keep the layer that set them.
        assert_eq!(c.data_dir(), PathBuf::from("/from/env"));
        assert_eq!(c.node_id(), 4);
        assert_eq!(c.server.host, "10.0.0.1");
        assert_eq!(c.reads.max_staleness_ms, 111);
        assert_eq!(c.server.admin_port, 9190);
    }

    #[test]
    fn every_flag_sets_its_key() {
        let flags = Overrides {
            host: Some("0.0.0.0".into()),
            port: Some(0),
            admin_port: Some(0),
            data_dir: Some("/tmp/d".into()),
            mode: Some(Mode::Standalone),
            node_id: Some(7),
            column_families: Some(vec!["default".into(), "x".into()]),
            allow_fault_injection: Some(true),
        };
        let c = Config::load(
            None,
            &env(&[("DOLMEN_DEPLOYMENT__MODE", "replicated")]),
            &flags,
        )
        .unwrap();
        assert_eq!(c.server.host, "0.0.0.0");
        assert_eq!((c.server.port, c.server.admin_port), (0, 0));
        assert_eq!(c.data_dir(), PathBuf::from("/tmp/d"));
        assert_eq!(c.deployment.mode, Mode::Standalone);
        assert_eq!(c.node_id(), 7);
        assert_eq!(c.database.column_families, ["default", "x"]);
        assert!(c.faults.allow_injection);
    }

    #[test]
    fn bad_flags_are_named() {
        let flags = Overrides {
            node_id: Some(u64::MAX),
            ..Overrides::default()
        };
        match Config::load(None, &[], &flags).unwrap_err() {
            ConfigError::Invalid {
                key,
                problem,
                origin,
            } => {
                assert_eq!(key, "deployment.instance_id");
                assert_eq!(
                    problem,
                    format!("must be at most 4294967295, got {}", u64::MAX)
                );
                assert_eq!(origin, Some(Origin::Flag("--node-id")));
            }
            other => panic!("{other:?}"),
        }
        let flags = Overrides {
            column_families: Some(vec!["users".into()]),
            ..Overrides::default()
        };
        let err = Config::load(None, &[], &flags).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid `database.column_families` (set by flag --column-families)"),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_say_where_the_value_came_from() {
        match load_env(&[("DOLMEN_READS__MAX_STALENESS_MS", "0")]).unwrap_err() {
            ConfigError::Invalid {
                key,
                problem,
                origin,
            } => {
                assert_eq!(key, "reads.max_staleness_ms");
                assert_eq!(problem, "must be > 0, got 0");
                assert_eq!(
                    origin,
                    Some(Origin::Env("DOLMEN_READS__MAX_STALENESS_MS".into()))
                );
            }
            other => panic!("{other:?}"),
        }
        let f = file("[mvcc]\nretention_window_ms = 0\n");
        match Config::load(Some(f.path()), &[], &Overrides::default()).unwrap_err() {
            ConfigError::Invalid { key, origin, .. } => {
                assert_eq!(key, "mvcc.retention_window_ms");
                assert_eq!(origin, Some(Origin::File(f.path().to_owned())));
            }
            other => panic!("{other:?}"),
        }
        let flags = Overrides {
            admin_port: Some(9090),
            ..Overrides::default()
        };
        match Config::load(None, &[], &flags).unwrap_err() {
            ConfigError::Invalid { key, origin, .. } => {
                assert_eq!(key, "server.admin_port");
                assert_eq!(origin, Some(Origin::Flag("--admin-port")));
            }
            other => panic!("{other:?}"),
        }
        // Replicated mode without endpoints: the missing key has no origin.
        match load_env(&[("DOLMEN_DEPLOYMENT__MODE", "replicated")]).unwrap_err() {
            ConfigError::Invalid { key, origin, .. } => {
                assert_eq!(key, "deployment.replica_endpoints");
                assert_eq!(origin, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replicated_port_defaults_to_this_nodes_replica_endpoint() {
        let f = file(REPLICATED_NODE_1);
        let load = |vars: &[(&str, &str)], flags: &Overrides| {
            Config::load(Some(f.path()), &env(vars), flags).unwrap()
        };
        let none = Overrides::default();
        assert_eq!(load(&[], &none).server.port, 9091);
        // The node id may come from a flag.
        let node2 = Overrides {
            node_id: Some(2),
            ..Overrides::default()
        };
        assert_eq!(load(&[], &node2).server.port, 9092);
        // Any explicit port wins, even one equal to the default 9090.
        assert_eq!(load(&[("THRIFT_PORT", "9500")], &none).server.port, 9500);
        assert_eq!(load(&[("DOLMEN_PORT", "9090")], &none).server.port, 9090);
        assert_eq!(
            load(&[("DOLMEN_SERVER__PORT", "9600")], &none).server.port,
            9600
        );
        let port0 = Overrides {
            port: Some(0),
            ..Overrides::default()
        };
        assert_eq!(load(&[], &port0).server.port, 0);
        let in_file = format!("{REPLICATED_NODE_1}[server]\nport = 9090\n");
        assert_eq!(load_file(&in_file).unwrap().server.port, 9090);
        // Standalone mode ignores the endpoints.
        let standalone = REPLICATED_NODE_1.replace("\"replicated\"", "\"standalone\"");
        assert_eq!(load_file(&standalone).unwrap().server.port, 9090);
    }

    #[test]
    fn replicated_instance_id_out_of_range_is_reported_not_defaulted() {
        let flags = Overrides {
            node_id: Some(3),
            ..Overrides::default()
        };
        let f = file(REPLICATED_NODE_1);
        match Config::load(Some(f.path()), &[], &flags).unwrap_err() {
            ConfigError::Invalid { key, origin, .. } => {
                assert_eq!(key, "deployment.instance_id");
                assert_eq!(origin, Some(Origin::Flag("--node-id")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn schema_lists_every_section() {
        let sections: Vec<&str> = schema().keys().map(String::as_str).collect();
        assert_eq!(
            sections,
            [
                "consensus",
                "database",
                "deployment",
                "faults",
                "mvcc",
                "reads",
                "rocksdb",
                "server"
            ]
        );
        assert!(schema().values().all(Value::is_table));
    }

    #[test]
    fn edit_distance_and_closest() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("port", "prot"), 1);
        assert_eq!(edit_distance("ca", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            closest("admin_prt", ["port", "admin_port"]),
            Some("admin_port")
        );
        assert_eq!(closest("zzz", ["port", "host"]), None);
    }
}
