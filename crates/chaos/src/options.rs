//! [`RunOptions`]: everything that decides what a run does, resolved from the command line
//! (profile defaults filled in) and saved in `run.json` so `dolmen-chaos replay` can repeat it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::nemesis::FaultKind;
use crate::workload::Workload;

/// A bug planted in the server on purpose, to prove the checkers catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlantedBug {
    /// `[faults] unsafe_stale_reads = true`: followers answer linearizable reads from local
    /// state; the register checker must find a violation under partitions.
    StaleReads,
    /// `[faults] unsafe_skip_log_fsync = true` (with `lose_unsynced_writes`): the Raft log
    /// acknowledges before its fsync; the set checker must find acknowledged inserts lost when
    /// every node crashes at once (`crash-all`).
    SkipLogFsync,
    /// `[faults] unsafe_skip_conflict_check = true`: commits skip the read-conflict check; the
    /// list-append checker must find a cycle (lost updates, write skew).
    SkipConflictCheck,
}

/// A run's resolved parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOptions {
    /// Seed of every random choice.
    pub seed: u64,
    /// How long clients and nemesis run (setup and checks come on top).
    pub duration_secs: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Which workloads run (clients are spread over them round-robin).
    pub workloads: Vec<Workload>,
    /// Which fault kinds the nemesis draws from (empty = no faults).
    pub faults: Vec<FaultKind>,
    /// Number of concurrent clients.
    pub clients: usize,
    /// The `dolmen` binary.
    pub dolmen: PathBuf,
    /// A planted server bug, if any.
    pub planted_bug: Option<PlantedBug>,
    /// The profile the defaults came from (`short`, `long`), if any.
    pub profile: Option<String>,
    /// Keep the nodes' data directories even when the run passes.
    pub keep_data: bool,
    /// `[reads] consistency_level = "lease"` on every node (absent in older run.json files).
    #[serde(default)]
    pub lease_reads: bool,
    /// `[faults] lose_unsynced_writes = true` on every node: a kill loses what a power cut
    /// would (absent in older run.json files).
    #[serde(default)]
    pub lose_unsynced_writes: bool,
    /// `[sharding] split_keys` on every node, as given (`--split-keys`; empty = not sharded,
    /// and absent in older run.json files). Checked by [`crate::shards::Ranges::new`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split_keys: Vec<String>,
    /// With the planted bug `skip-conflict-check` on a sharded run: the one data group that
    /// skips the check (`--planted-bug-group`; 0: every group, and absent in older run.json
    /// files).
    #[serde(default)]
    pub planted_bug_group: u64,
}

impl RunOptions {
    /// The run's duration.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    /// The key ranges of the run (one range when not sharded).
    ///
    /// # Errors
    /// When the split keys are not valid (a hand-edited run.json).
    pub fn ranges(&self) -> Result<crate::shards::Ranges, crate::shards::SplitKeysError> {
        crate::shards::Ranges::new(self.split_keys.clone())
    }

    /// Whether a network fault kind is selected.
    pub fn network_faults(&self) -> bool {
        self.faults.iter().any(|k| k.is_network())
    }
}

/// Parses `90s`, `2m`, `1h30m`, `45` (seconds).
///
/// # Errors
/// When the text is not such a duration, or is zero.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return nonzero(Duration::from_secs(secs), text);
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| anyhow!("{text:?} is not a duration (e.g. 90s, 2m, 1h30m)"))?;
        digits.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => bail!("{text:?}: unknown unit {c:?} (use s, m or h)"),
        };
    }
    if !digits.is_empty() {
        bail!("{text:?}: a number without a unit at the end (use s, m or h)");
    }
    nonzero(Duration::from_secs(total), text)
}

fn nonzero(d: Duration, text: &str) -> anyhow::Result<Duration> {
    if d.is_zero() {
        bail!("{text:?}: the duration must be positive");
    }
    Ok(d)
}

/// Parses `register,bank,set,list-append` (or `all`).
///
/// # Errors
/// When a name is unknown (the message lists the valid ones).
pub fn parse_workloads(text: &str) -> anyhow::Result<Vec<Workload>> {
    parse_list(
        text,
        &Workload::ALL,
        Workload::parse,
        Workload::name,
        "workload",
    )
}

/// Parses `kill,pause,...` (or `all`, or `none`).
///
/// # Errors
/// When a name is unknown (the message lists the valid ones).
pub fn parse_faults(text: &str) -> anyhow::Result<Vec<FaultKind>> {
    if text.trim() == "none" {
        return Ok(Vec::new());
    }
    parse_list(
        text,
        &FaultKind::ALL,
        FaultKind::parse,
        FaultKind::name,
        "fault",
    )
}

fn parse_list<T: Copy + PartialEq>(
    text: &str,
    all: &[T],
    parse: fn(&str) -> Option<T>,
    name: fn(T) -> &'static str,
    what: &str,
) -> anyhow::Result<Vec<T>> {
    if text.trim() == "all" {
        return Ok(all.to_vec());
    }
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let item = parse(part).ok_or_else(|| {
            let valid: Vec<&str> = all.iter().map(|&x| name(x)).collect();
            anyhow!("unknown {what} {part:?}; valid: all, {}", valid.join(", "))
        })?;
        if !out.contains(&item) {
            out.push(item);
        }
    }
    if out.is_empty() {
        bail!("no {what} given");
    }
    Ok(out)
}

/// Joins names with commas.
pub fn names<T: Copy>(items: &[T], name: fn(T) -> &'static str) -> String {
    items.iter().map(|&x| name(x)).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("2m30").is_err());
    }

    #[test]
    fn run_json_without_split_keys_still_loads() {
        let old = r#"{"seed": 3, "duration_secs": 30, "nodes": 3, "workloads": ["bank"],
            "faults": ["kill"], "clients": 4, "dolmen": "/bin/dolmen", "planted_bug": null,
            "profile": null, "keep_data": false}"#;
        let o: RunOptions = serde_json::from_str(old).unwrap();
        assert!(o.split_keys.is_empty());
        assert!(!o.ranges().unwrap().is_sharded());
        let mut sharded = o.clone();
        sharded.split_keys = vec!["bank/4".into(), "la/".into()];
        let text = serde_json::to_string(&sharded).unwrap();
        let back: RunOptions = serde_json::from_str(&text).unwrap();
        assert_eq!(back.split_keys, sharded.split_keys);
        assert_eq!(back.ranges().unwrap().len(), 3);
        assert!(
            !serde_json::to_string(&o).unwrap().contains("split_keys"),
            "an unsharded run.json reads as before"
        );
    }

    #[test]
    fn lists() {
        assert_eq!(parse_faults("all").unwrap().len(), FaultKind::ALL.len());
        assert_eq!(
            parse_faults("kill, pause,kill").unwrap(),
            vec![FaultKind::Kill, FaultKind::Pause]
        );
        assert!(parse_faults("none").unwrap().is_empty());
        let e = parse_faults("kill,nuke").unwrap_err().to_string();
        assert!(e.contains("nuke") && e.contains("partition"), "{e}");
        assert_eq!(parse_workloads("set").unwrap(), vec![Workload::Set]);
    }
}
