//! The network fault rules of `/debug/network-faults` (tests only): what a node does to the
//! peer calls it sends (drop, delay or duplicate them, per peer, per RPC, with a probability),
//! as the body of `PUT` and the answer of `GET`, `PUT` and `DELETE`, and the checks a rule set
//! must pass ([`RuleSet::validate`]), which the server runs before installing it.

use serde::{Deserialize, Serialize};

use crate::status::NodeId;

/// Longest delay a rule may ask for (delay plus jitter).
pub const MAX_DELAY_MS: u64 = 60_000;
/// Most rules at once.
pub const MAX_RULES: usize = 1024;
/// The peer RPC names a rule may name in `rpcs`.
pub const RPCS: [&str; 8] = [
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

impl Rule {
    /// A rule doing `action` to every call to every peer, always.
    pub fn new(action: RuleAction) -> Self {
        Self {
            to: None,
            action,
            probability: 1.0,
            delay_ms: 0,
            jitter_ms: 0,
            rpcs: Vec::new(),
        }
    }

    /// Whether the rule applies to an `rpc` call to peer `to`.
    pub fn matches(&self, to: NodeId, rpc: &str) -> bool {
        self.to.is_none_or(|t| t == to)
            && (self.rpcs.is_empty() || self.rpcs.iter().any(|r| r == rpc))
    }

    fn validate(&self, index: usize) -> Result<(), RuleError> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(RuleError::Probability {
                index,
                probability: self.probability,
            });
        }
        let delay_ms = self.delay_ms.saturating_add(self.jitter_ms);
        match self.action {
            RuleAction::Delay if delay_ms == 0 => return Err(RuleError::NoDelay { index }),
            RuleAction::Delay if delay_ms > MAX_DELAY_MS => {
                return Err(RuleError::DelayTooLong { index, delay_ms })
            }
            RuleAction::Drop | RuleAction::Duplicate if delay_ms > 0 => {
                return Err(RuleError::DelayWithoutDelayAction { index })
            }
            _ => {}
        }
        if let Some(unknown) = self.rpcs.iter().find(|r| !RPCS.contains(&r.as_str())) {
            return Err(RuleError::UnknownRpc {
                index,
                rpc: unknown.clone(),
            });
        }
        Ok(())
    }
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
    ///
    /// # Errors
    /// The first rule that breaks a limit, as [`RuleError`].
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.rules.len() > MAX_RULES {
            return Err(RuleError::TooMany {
                count: self.rules.len(),
            });
        }
        for (index, rule) in self.rules.iter().enumerate() {
            rule.validate(index)?;
        }
        Ok(())
    }
}

/// Why a rule set is refused (400); each message starts with the rule and field at fault.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// More than [`MAX_RULES`] rules.
    #[error("rules: at most {MAX_RULES} rules, got {count}")]
    TooMany {
        /// How many were sent.
        count: usize,
    },
    /// A probability outside `[0, 1]`.
    #[error("rules[{index}].probability: must be within [0, 1], got {probability}")]
    Probability {
        /// The rule's position.
        index: usize,
        /// The value sent.
        probability: f64,
    },
    /// A delay rule without a delay.
    #[error("rules[{index}].delay_ms: a delay rule needs delay_ms or jitter_ms above 0")]
    NoDelay {
        /// The rule's position.
        index: usize,
    },
    /// A delay rule above [`MAX_DELAY_MS`].
    #[error(
        "rules[{index}].delay_ms: delay_ms + jitter_ms must be at most {MAX_DELAY_MS}, got {delay_ms}"
    )]
    DelayTooLong {
        /// The rule's position.
        index: usize,
        /// `delay_ms + jitter_ms` as sent.
        delay_ms: u64,
    },
    /// A drop or duplicate rule with a delay.
    #[error("rules[{index}].delay_ms: only delay rules take delay_ms and jitter_ms")]
    DelayWithoutDelayAction {
        /// The rule's position.
        index: usize,
    },
    /// An RPC name not in [`RPCS`].
    #[error("rules[{index}].rpcs: unknown RPC {rpc:?}; known: {}", RPCS.join(", "))]
    UnknownRpc {
        /// The rule's position.
        index: usize,
        /// The name sent.
        rpc: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Why `json` is not an acceptable rule set: a parse error or a [`RuleError`], as text.
    fn refusal(json: &str) -> String {
        match serde_json::from_str::<RuleSet>(json) {
            Err(e) => e.to_string(),
            Ok(set) => set.validate().expect_err(json).to_string(),
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
            let error = refusal(json);
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn a_rule_set_round_trips_without_its_defaults() {
        let set = RuleSet {
            rules: vec![Rule {
                to: Some(2),
                ..Rule::new(RuleAction::Drop)
            }],
        };
        set.validate().unwrap();
        let text = serde_json::to_string(&set).unwrap();
        assert_eq!(
            text,
            r#"{"rules":[{"to":2,"action":"drop","probability":1.0,"delay_ms":0,"jitter_ms":0}]}"#
        );
        assert_eq!(serde_json::from_str::<RuleSet>(&text).unwrap(), set);
    }
}
