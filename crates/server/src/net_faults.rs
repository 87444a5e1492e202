//! Network fault rules for the fault-injection suite (`dolmen-chaos`): what this node does to the
//! peer calls it sends: drop, delay or duplicate them, per peer, per RPC, with a probability.
//! Installed only when `[faults] allow_network_faults = true` (never in production), and set
//! through the admin API (`PUT /debug/network-faults`).
//!
//! A partition between A and B is a `drop` rule on A for B and one on B for A; a one-way cut is
//! one of them. The rules live in memory: a restarted node starts with none.

use std::time::Duration;

use dolmen_raft::network::{FaultAction, PeerFaults};
use dolmen_raft::NodeId;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::faults::Dice;

/// Longest delay a rule may ask for (delay plus jitter).
const MAX_DELAY_MS: u64 = 60_000;
/// Most rules at once.
const MAX_RULES: usize = 1024;
/// The peer RPC names a rule may name in `rpcs`.
const RPCS: [&str; 8] = [
    "Vote",
    "PreVote",
    "AppendEntries",
    "InstallSnapshot",
    "TransferLeader",
    "Forward",
    "ReadIndex",
    "Probe",
];

/// What a rule does to a matching call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Lose the call (the caller's timeout expires).
    Drop,
    /// Hold the call for `delay_ms` (plus up to `jitter_ms`) before sending it.
    Delay,
    /// Send Raft's own calls twice (others are delivered once).
    Duplicate,
}

/// One rule, as the admin API reads and shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The peer the rule applies to; absent = every peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NodeId>,
    /// What happens to a matching call.
    pub action: RuleAction,
    /// The chance a matching call is affected, in `[0, 1]` (default 1).
    #[serde(default = "always")]
    pub probability: f64,
    /// For `delay`: the fixed part of the delay.
    #[serde(default)]
    pub delay_ms: u64,
    /// For `delay`: a uniformly drawn extra delay in `[0, jitter_ms]`.
    #[serde(default)]
    pub jitter_ms: u64,
    /// The RPCs the rule applies to (names as in [`RPCS`]); absent or empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rpcs: Vec<String>,
}

fn always() -> f64 {
    1.0
}

/// The body of `PUT /debug/network-faults` and the answer of every `/debug/network-faults` call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The rules, first match wins.
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// Checks every rule; the error names the rule and the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > MAX_RULES {
            return Err(format!(
                "rules: at most {MAX_RULES} rules, got {}",
                self.rules.len()
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate().map_err(|e| format!("rules[{i}].{e}"))?;
        }
        Ok(())
    }
}

impl Rule {
    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(format!(
                "probability: must be within [0, 1], got {}",
                self.probability
            ));
        }
        let delay = self.delay_ms.saturating_add(self.jitter_ms);
        match self.action {
            RuleAction::Delay if delay == 0 => {
                return Err("delay_ms: a delay rule needs delay_ms or jitter_ms above 0".into())
            }
            RuleAction::Delay if delay > MAX_DELAY_MS => {
                return Err(format!(
                    "delay_ms: delay_ms + jitter_ms must be at most {MAX_DELAY_MS}, got {delay}"
                ))
            }
            RuleAction::Drop | RuleAction::Duplicate if delay > 0 => {
                return Err("delay_ms: only delay rules take delay_ms and jitter_ms".into())
            }
            _ => {}
        }
        if let Some(unknown) = self.rpcs.iter().find(|r| !RPCS.contains(&r.as_str())) {
            return Err(format!(
                "rpcs: unknown RPC {unknown:?}; known: {}",
                RPCS.join(", ")
            ));
        }
        Ok(())
    }

    fn matches(&self, to: NodeId, rpc: &str) -> bool {
        self.to.is_none_or(|t| t == to)
            && (self.rpcs.is_empty() || self.rpcs.iter().any(|r| r == rpc))
    }
}

/// This node's network fault rules: the [`PeerFaults`] hook of its peer transport.
#[derive(Debug, Default)]
pub struct NetworkFaults {
    rules: RwLock<RuleSet>,
    dice: Dice,
}

impl NetworkFaults {
    /// Replaces the rules after checking them.
    pub fn set(&self, rules: RuleSet) -> Result<(), String> {
        rules.validate()?;
        *self.rules.write() = rules;
        Ok(())
    }

    /// The current rules.
    pub fn get(&self) -> RuleSet {
        self.rules.read().clone()
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.write().rules.clear();
    }
}

impl PeerFaults for NetworkFaults {
    fn check(&self, _from: NodeId, to: NodeId, rpc: &'static str) -> FaultAction {
        let rules = self.rules.read();
        let Some(rule) = rules.rules.iter().find(|r| r.matches(to, rpc)) else {
            return FaultAction::Deliver;
        };
        if !self.dice.roll(rule.probability) {
            return FaultAction::Deliver;
        }
        match rule.action {
            RuleAction::Drop => FaultAction::Drop,
            RuleAction::Duplicate => FaultAction::Duplicate,
            RuleAction::Delay => {
                let jitter = (self.dice.unit() * (rule.jitter_ms + 1) as f64) as u64;
                FaultAction::Delay(Duration::from_millis(
                    rule.delay_ms + jitter.min(rule.jitter_ms),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Result<RuleSet, String> {
        let set: RuleSet = serde_json::from_str(json).map_err(|e| e.to_string())?;
        set.validate()?;
        Ok(set)
    }

    #[test]
    fn first_matching_rule_decides_per_peer_and_rpc() {
        let faults = NetworkFaults::default();
        faults
            .set(
                rules(
                    r#"{"rules":[
                        {"to":2,"action":"drop","rpcs":["AppendEntries"]},
                        {"to":2,"action":"delay","delay_ms":30},
                        {"action":"duplicate"}]}"#,
                )
                .unwrap(),
            )
            .unwrap();
        assert_eq!(faults.check(0, 2, "AppendEntries"), FaultAction::Drop);
        assert_eq!(
            faults.check(0, 2, "Vote"),
            FaultAction::Delay(Duration::from_millis(30))
        );
        assert_eq!(faults.check(0, 1, "Vote"), FaultAction::Duplicate);
        faults.clear();
        assert_eq!(faults.check(0, 2, "AppendEntries"), FaultAction::Deliver);
    }

    #[test]
    fn probability_and_jitter_stay_in_bounds() {
        let faults = NetworkFaults::default();
        faults
            .set(rules(r#"{"rules":[{"action":"drop","probability":0.5}]}"#).unwrap())
            .unwrap();
        let dropped = (0..2000)
            .filter(|_| faults.check(0, 1, "Vote") == FaultAction::Drop)
            .count();
        assert!((700..1300).contains(&dropped), "dropped {dropped} of 2000");

        faults
            .set(rules(r#"{"rules":[{"action":"delay","delay_ms":10,"jitter_ms":5}]}"#).unwrap())
            .unwrap();
        for _ in 0..500 {
            match faults.check(0, 1, "Vote") {
                FaultAction::Delay(d) => assert!((10..=15).contains(&d.as_millis()), "{d:?}"),
                other => panic!("expected a delay, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field() {
        let cases = [
            (
                r#"{"rules":[{"action":"drop","probability":2}]}"#,
                "rules[0].probability",
            ),
            (r#"{"rules":[{"action":"delay"}]}"#, "rules[0].delay_ms"),
            (
                r#"{"rules":[{"action":"drop","delay_ms":5}]}"#,
                "rules[0].delay_ms",
            ),
            (
                r#"{"rules":[{"action":"delay","delay_ms":70000}]}"#,
                "rules[0].delay_ms",
            ),
            (
                r#"{"rules":[{"action":"drop"},{"action":"drop","rpcs":["Nope"]}]}"#,
                "rules[1].rpcs",
            ),
            (r#"{"rules":[{"action":"explode"}]}"#, "unknown variant"),
            (r#"{"rules":[{"action":"drop","too":1}]}"#, "unknown field"),
        ];
        for (json, expected) in cases {
            let error = rules(json).expect_err(json);
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
