//! `Config::load` end to end: the file, environment and flag layers, their precedence, and
//! the errors that name the key and where its value came from.

use super::schema::{closest, edit_distance};
use super::*;
use crate::ConsistencyLevel;
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
            assert!(hint.contains("consensus, database, deployment"), "{hint}");
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
            "[reads]\nconsistency_level = \"eventual\"\n",
            "unknown variant `eventual`",
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
            "eventual",
            "unknown variant `eventual`",
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
            "bloom_filter",
            "cache",
            "client_tls",
            "cluster",
            "compaction",
            "compression",
            "concurrency",
            "consensus",
            "database",
            "deployment",
            "faults",
            "logging",
            "memory",
            "mvcc",
            "performance",
            "reads",
            "rocksdb",
            "server",
            "sharding",
            "tls"
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

#[test]
fn replication_mode_is_quorum_or_all_and_a_bad_value_names_the_key() {
    let c = load_file("[consensus]\nreplication_mode = \"all\"\nall_wait_ms = 500\n").unwrap();
    assert_eq!(c.consensus.replication_mode, crate::ReplicationMode::All);
    assert_eq!(c.consensus.all_wait_ms, 500);
    match load_file("[consensus]\nreplication_mode = \"majority\"\n").unwrap_err() {
        ConfigError::Parse { message, .. } => {
            assert!(message.contains("replication_mode"), "{message}");
            assert!(message.contains("unknown variant `majority`"), "{message}");
            assert!(message.contains("expected `quorum` or `all`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match load_file("[consensus]\nall_wait_ms = 0\n").unwrap_err() {
        ConfigError::Invalid { key, problem, .. } => {
            assert_eq!(key, "consensus.all_wait_ms");
            assert!(problem.contains("got 0"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

/// Loads `REPLICATED_NODE_1` with `sharding` as its `[sharding]` section.
fn load_sharded(sharding: &str) -> Result<Config, ConfigError> {
    load_file(&format!("{REPLICATED_NODE_1}[sharding]\n{sharding}"))
}

/// The key, problem and origin of an `Invalid` error; panics on anything else.
fn invalid(result: Result<Config, ConfigError>) -> (String, String, Option<Origin>) {
    match result {
        Err(ConfigError::Invalid {
            key,
            problem,
            origin,
        }) => (key, problem, origin),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// Asserts that `[sharding]` text `sharding` is refused naming `key`, with `parts` in the
/// problem, and that the error says the value came from the config file.
fn assert_sharding_refused(sharding: &str, key: &str, parts: &[&str]) {
    let (got, problem, origin) = invalid(load_sharded(sharding));
    assert_eq!(got, key, "{sharding}: {problem}");
    for part in parts {
        assert!(
            problem.contains(part),
            "{sharding}: {problem:?} lacks {part:?}"
        );
    }
    assert!(
        matches!(origin, Some(Origin::File(_))),
        "{sharding}: origin {origin:?}"
    );
}

#[test]
fn sharding_is_off_by_default_and_absent_from_an_unsharded_fingerprint() {
    let c = load_file(REPLICATED_NODE_1).unwrap();
    assert_eq!(c.sharding, crate::ShardingConfig::default());
    assert_eq!(c.sharding.shards, 0);
    assert!(c.sharding.split_keys.is_empty());
    assert_eq!(c.sharding.data_groups(), 0);
    assert_eq!(c.sharding.fingerprint(), None);
    let c = load_sharded("shards = 0\nsplit_keys = []\n").unwrap();
    assert_eq!(c.sharding.data_groups(), 0);
}

#[test]
fn shards_and_split_keys_load_from_the_file() {
    let c = load_sharded("shards = 4\n").unwrap();
    assert_eq!(c.sharding.data_groups(), 4);
    assert_eq!(c.sharding.fingerprint().as_deref(), Some("shards=4"));
    let c = load_sharded("shards = 1024\n").unwrap();
    assert_eq!(c.sharding.data_groups(), 1024);

    let c = load_sharded("split_keys = [\"bench/4\", \"hex:c0ff\", \"hex:C1\"]\n").unwrap();
    assert_eq!(c.sharding.data_groups(), 4);
    assert_eq!(
        c.sharding.decoded_split_keys(),
        [b"bench/4".to_vec(), vec![0xc0, 0xff], vec![0xc1]]
    );
    assert_eq!(
        c.sharding.fingerprint().as_deref(),
        Some("split_keys=62656e63682f34,c0ff,c1")
    );
    // A key of exactly 10000 bytes, and 1023 keys (1024 data groups), are the limits.
    let long = "k".repeat(10_000);
    let c = load_sharded(&format!("split_keys = [\"{long}\"]\n")).unwrap();
    assert_eq!(c.sharding.decoded_split_keys()[0].len(), 10_000);
    let many: Vec<String> = (0..1023).map(|i| format!("\"k{i:04}\"")).collect();
    let c = load_sharded(&format!("split_keys = [{}]\n", many.join(","))).unwrap();
    assert_eq!(c.sharding.data_groups(), 1024);
}

#[test]
fn equal_sharding_settings_give_equal_fingerprints_on_every_node() {
    let node0 = REPLICATED_NODE_1.replace("instance_id = 1", "instance_id = 0");
    let spelled = |node: &str, keys: &str| {
        load_file(&format!("{node}[sharding]\nsplit_keys = {keys}\n"))
            .unwrap()
            .sharding
            .fingerprint()
    };
    let a = spelled(&node0, r#"["g", "t"]"#);
    let b = spelled(REPLICATED_NODE_1, r#"["hex:67", "hex:74"]"#);
    assert!(a.is_some());
    assert_eq!(a, b);
    assert_ne!(a, spelled(REPLICATED_NODE_1, r#"["g", "u"]"#));
    assert_ne!(a, spelled(REPLICATED_NODE_1, r#"["g"]"#));
    assert_ne!(
        a,
        load_sharded("shards = 3\n").unwrap().sharding.fingerprint()
    );
    assert_ne!(
        load_sharded("shards = 3\n").unwrap().sharding.fingerprint(),
        load_sharded("shards = 4\n").unwrap().sharding.fingerprint()
    );
}

#[test]
fn the_orphan_timeout_defaults_to_twice_the_election_timeout_and_at_least_three_seconds() {
    let c = load_sharded("shards = 2\n").unwrap();
    assert_eq!(c.sharding.orphan_timeout_ms, 0);
    assert_eq!(c.sharding.orphan_timeout_ms(1000), 3000);
    assert_eq!(c.sharding.orphan_timeout_ms(2500), 5000);
    let c = load_sharded("shards = 2\norphan_timeout_ms = 2000\n").unwrap();
    assert_eq!(c.sharding.orphan_timeout_ms(1000), 2000);
}

#[test]
fn each_sharding_refusal_names_its_key_and_what_was_wrong() {
    assert_sharding_refused(
        "shards = 1025\n",
        "sharding.shards",
        &["between 0 (not sharded) and 1024", "got 1025"],
    );
    assert_sharding_refused(
        "shards = 2\norphan_timeout_ms = 1500\n",
        "sharding.orphan_timeout_ms",
        &[
            "or at least twice consensus.election_timeout_ms (1000)",
            "got 1500",
            "taken for dead",
        ],
    );
    assert_sharding_refused(
        "shards = 2\nsplit_keys = [\"m\"]\n",
        "sharding.split_keys",
        &["sharding.shards", "shards = 2", "leave the other out"],
    );
    assert_sharding_refused(
        "split_keys = [\"a\", \"hex:c0fg\"]\n",
        "sharding.split_keys[1]",
        &["\"hex:c0fg\"", "character 8 ('g') is not a hex digit"],
    );
    assert_sharding_refused(
        "split_keys = [\"hex:abc\"]\n",
        "sharding.split_keys[0]",
        &["\"hex:abc\"", "has 3 hex digits", "must be even"],
    );
    assert_sharding_refused(
        "split_keys = [\"a\", \"b\", \"\"]\n",
        "sharding.split_keys[2]",
        &["\"\" is 0 bytes", "1 to 10000 bytes"],
    );
    assert_sharding_refused(
        "split_keys = [\"hex:\"]\n",
        "sharding.split_keys[0]",
        &["\"hex:\" is 0 bytes"],
    );
    let long = format!("split_keys = [\"{}\"]\n", "k".repeat(10_001));
    assert_sharding_refused(
        &long,
        "sharding.split_keys[0]",
        &[
            &format!("\"{}\"... is 10001 bytes", "k".repeat(40)),
            "1 to 10000 bytes",
        ],
    );
    let (_, problem, _) = invalid(load_sharded(&long));
    assert!(problem.len() < 200, "the key is cut short: {problem}");
    assert_sharding_refused(
        "split_keys = [\"a\", \"c\", \"b\"]\n",
        "sharding.split_keys[2]",
        &[
            "\"b\" is not above sharding.split_keys[1] = \"c\"",
            "strictly increasing",
        ],
    );
    // Equal once decoded, though spelled differently.
    assert_sharding_refused(
        "split_keys = [\"a\", \"hex:61\"]\n",
        "sharding.split_keys[1]",
        &["\"hex:61\" is not above sharding.split_keys[0] = \"a\""],
    );
    // Bytes, not text: "\u{e9}" (0xc3 0xa9) sorts above "z" (0x7a), and 0x7a00 above "z".
    load_sharded("split_keys = [\"z\", \"hex:7a00\", \"\u{e9}\"]\n").unwrap();
    let many: Vec<String> = (0..1024).map(|i| format!("\"k{i:04}\"")).collect();
    assert_sharding_refused(
        &format!("split_keys = [{}]\n", many.join(",")),
        "sharding.split_keys",
        &["at most 1023 keys (1024 data groups), got 1024"],
    );
}

#[test]
fn a_standalone_node_refuses_sharding() {
    let standalone = "[deployment]\nmode = \"standalone\"\n[sharding]\n";
    for (sharding, key) in [
        ("shards = 1\n", "sharding.shards"),
        ("split_keys = [\"m\"]\n", "sharding.split_keys"),
    ] {
        let (got, problem, origin) = invalid(load_file(&format!("{standalone}{sharding}")));
        assert_eq!(got, key);
        assert_eq!(
            problem,
            "[sharding] needs deployment.mode = \"replicated\"; a standalone node runs one group"
        );
        assert!(matches!(origin, Some(Origin::File(_))), "{origin:?}");
    }
    // Unsharded, standalone is fine.
    load_file(&format!("{standalone}shards = 0\n")).unwrap();
}

#[test]
fn sharding_is_set_from_the_environment_and_errors_name_the_variable() {
    let f = file(REPLICATED_NODE_1);
    let load =
        |vars: &[(&str, &str)]| Config::load(Some(f.path()), &env(vars), &Overrides::default());

    let c = load(&[("DOLMEN_SHARDING__SHARDS", "8")]).unwrap();
    assert_eq!(c.sharding.data_groups(), 8);
    // A TOML array is taken exactly; a comma list splits on commas and trims spaces.
    let c = load(&[("DOLMEN_SHARDING__SPLIT_KEYS", r#"["a b", "hex:c0ff"]"#)]).unwrap();
    assert_eq!(
        c.sharding.decoded_split_keys(),
        [b"a b".to_vec(), vec![0xc0, 0xff]]
    );
    let c = load(&[("DOLMEN_SHARDING__SPLIT_KEYS", "g, hex:74")]).unwrap();
    assert_eq!(c.sharding.split_keys, ["g", "hex:74"]);
    assert_eq!(c.sharding.data_groups(), 3);

    let (key, _, origin) = invalid(load(&[("DOLMEN_SHARDING__SPLIT_KEYS", "b,a")]));
    assert_eq!(key, "sharding.split_keys[1]");
    assert_eq!(
        origin,
        Some(Origin::Env("DOLMEN_SHARDING__SPLIT_KEYS".into()))
    );
    let (key, _, origin) = invalid(load(&[("DOLMEN_SHARDING__SHARDS", "2000")]));
    assert_eq!(key, "sharding.shards");
    assert_eq!(origin, Some(Origin::Env("DOLMEN_SHARDING__SHARDS".into())));
    match load(&[("DOLMEN_SHARDING__SHARDS", "four")]).unwrap_err() {
        ConfigError::Env { var, problem } => {
            assert_eq!(var, "DOLMEN_SHARDING__SHARDS");
            assert!(problem.contains("`sharding.shards`"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
    // One underscore between section and key is a typo the error points out.
    match load(&[("DOLMEN_SHARDING_SHARDS", "4")]).unwrap_err() {
        ConfigError::Env { var, problem } => {
            assert_eq!(var, "DOLMEN_SHARDING_SHARDS");
            assert!(
                problem.contains("did you mean DOLMEN_SHARDING__SHARDS? (two underscores"),
                "{problem}"
            );
        }
        other => panic!("{other:?}"),
    }
    match load_file("[sharding]\nshard = 4\n").unwrap_err() {
        ConfigError::UnknownKey { key, hint, .. } => {
            assert_eq!(key, "sharding.shard");
            assert_eq!(hint, "did you mean `sharding.shards`?");
        }
        other => panic!("{other:?}"),
    }
}
