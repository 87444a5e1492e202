//! The schema every layer is checked against: the serialized [`Config::default`] (every section
//! and key with its default), per-key type checks, and "did you mean" hints for unknown names.

use std::sync::OnceLock;

use toml::{Table, Value};

use super::env::{env_var_name, ENV_PREFIX, ENV_SEPARATOR};
use crate::{Config, ConfigError, Origin};

/// Why a value does not fit its key: toml's message, trimmed (e.g. "invalid type: string
/// \"x\", expected u64").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct BadValue(String);

/// Whether `value` deserializes as `section.key` (every other key keeps its default, so an
/// error can only be about this one).
pub(super) fn check_value(section: &str, key: &str, value: &Value) -> Result<(), BadValue> {
    let mut keys = Table::new();
    keys.insert(key.to_owned(), value.clone());
    let mut sections = Table::new();
    sections.insert(section.to_owned(), Value::Table(keys));
    Value::Table(sections)
        .try_into::<Config>()
        .map(drop)
        .map_err(|e| BadValue(e.message().trim().to_owned()))
}

/// Every section and key, with its default value: the serialized [`Config::default`].
pub(super) fn schema() -> &'static Table {
    static SCHEMA: OnceLock<Table> = OnceLock::new();
    SCHEMA.get_or_init(|| match Value::try_from(Config::default()) {
        Ok(Value::Table(table)) => table,
        other => panic!("the default Config must serialize to a TOML table, got {other:?}"),
    })
}

/// The default value of `section.key`, or `None` if there is no such key.
pub(super) fn key_default(section: &str, key: &str) -> Option<&'static Value> {
    schema().get(section)?.as_table()?.get(key)
}

/// An [`ConfigError::UnknownKey`] for `section` (when `key` is `None`) or `section.key`, with
/// a hint spelled for the origin (a TOML name or an environment variable).
pub(super) fn unknown_key(section: &str, key: Option<&str>, origin: Origin) -> ConfigError {
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

/// `names` separated by commas.
pub(super) fn join<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    names
        .into_iter()
        .map(|name| name.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate nearest to `name` by edit distance, if it is near enough to be a typo.
pub(super) fn closest<S: AsRef<str>>(
    name: &str,
    candidates: impl IntoIterator<Item = S>,
) -> Option<S> {
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
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
