//! The environment layer: `THRIFT_PORT`, `DOLMEN_<SECTION>__<KEY>` and the named shorthands
//! (`DOLMEN_HOST`, ...), each value read as TOML for its key and checked before it is merged;
//! an unknown `DOLMEN_*` variable is an error with the nearest real name.

use toml::{Table, Value};

use super::schema::{check_value, closest, join, key_default, schema, unknown_key};
use super::Layers;
use crate::{ConfigError, Origin};

/// `DOLMEN_*` variables that are read by the binary, not by [`Config::load`], which skips them.
pub const PASSTHROUGH_ENV: &[&str] = &["DOLMEN_CONFIG", "DOLMEN_LOG", "DOLMEN_ADDR", "DOLMEN_BIN"];

/// The prefix of every Dolmen environment variable.
pub(super) const ENV_PREFIX: &str = "DOLMEN_";

/// Separates section and key in `DOLMEN_<SECTION>__<KEY>`.
pub(super) const ENV_SEPARATOR: &str = "__";

/// The original server's port variable, weaker than every `DOLMEN_*` one.
const THRIFT_PORT: &str = "THRIFT_PORT";

/// Shorthand variables: (variable, section, key). Applied after the generic form.
const NAMED_ENV: [(&str, &str, &str); 4] = [
    ("DOLMEN_HOST", "server", "host"),
    ("DOLMEN_PORT", "server", "port"),
    ("DOLMEN_ADMIN_PORT", "server", "admin_port"),
    ("DOLMEN_DATA_DIR", "database", "base_path"),
];

pub(super) fn apply_env(layers: &mut Layers, env: &[(String, String)]) -> Result<(), ConfigError> {
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
    check_value(section, key, &value).map_err(|bad| ConfigError::Env {
        var: var.to_owned(),
        problem: format!("{raw:?} is not a valid `{section}.{key}`: {bad}"),
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
    let hint = match (one_underscore_key(stripped), near) {
        (Some(generic), _) => {
            format!("did you mean {generic}? (two underscores between section and key) ")
        }
        (None, Some(near)) => format!("did you mean {ENV_PREFIX}{near}? "),
        (None, None) => String::new(),
    };
    format!(
        "not a Dolmen setting; {hint}Dolmen reads {}, and DOLMEN_<SECTION>__<KEY> for any \
         config key (e.g. DOLMEN_READS__MAX_STALENESS_MS)",
        join(named)
    )
}

/// The generic variable for the key that `name` (a variable without `DOLMEN_`) spells with one
/// underscore between section and key, e.g. `DOLMEN_SHARDING__SHARDS` for `SHARDING_SHARDS`.
fn one_underscore_key(name: &str) -> Option<String> {
    let name = name.to_ascii_uppercase();
    schema()
        .iter()
        .flat_map(|(section, keys)| {
            let keys = keys.as_table().into_iter().flat_map(Table::keys);
            keys.map(move |key| (section, key))
        })
        .find(|(section, key)| {
            name == format!(
                "{}_{}",
                section.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            )
        })
        .map(|(section, key)| env_var_name(section, key))
}

/// The generic variable that sets `section.key`, e.g. `DOLMEN_READS__MAX_STALENESS_MS`.
pub(super) fn env_var_name(section: &str, key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}{ENV_SEPARATOR}{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}
