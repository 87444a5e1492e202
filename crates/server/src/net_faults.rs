//! Network fault rules for the fault-injection suite (`dolmen-chaos`): what this node does to the
//! peer calls it sends: drop, delay or duplicate them, per peer, per RPC, with a probability.
//! Installed only when `[faults] allow_network_faults = true` (never in production), and set
//! through the admin API (`PUT /debug/network-faults`).
//!
//! A partition between A and B is a `drop` rule on A for B and one on B for A; a one-way cut is
//! one of them. The rules live in memory: a restarted node starts with none.

use std::time::Duration;

use dolmen_admin::{RuleAction, RuleError, RuleSet};
use dolmen_raft::network::{FaultAction, PeerFaults};
use dolmen_raft::NodeId;
use parking_lot::RwLock;

use crate::faults::Dice;

/// This node's network fault rules: the [`PeerFaults`] hook of its peer transport.
#[derive(Debug, Default)]
pub struct NetworkFaults {
    rules: RwLock<RuleSet>,
    dice: Dice,
}

impl NetworkFaults {
    /// Replaces the rules after checking them.
    ///
    /// # Errors
    /// The first rule that breaks a limit; the rules in force stay as they were.
    pub fn set(&self, rules: RuleSet) -> Result<(), RuleError> {
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

    /// The rule set in `json` (the tests' sets are valid; [`NetworkFaults::set`] checks them).
    fn rules(json: &str) -> RuleSet {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn first_matching_rule_decides_per_peer_and_rpc() {
        let faults = NetworkFaults::default();
        faults
            .set(rules(
                r#"{"rules":[
                        {"to":2,"action":"drop","rpcs":["AppendEntries"]},
                        {"to":2,"action":"delay","delay_ms":30},
                        {"action":"duplicate"}]}"#,
            ))
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
            .set(rules(r#"{"rules":[{"action":"drop","probability":0.5}]}"#))
            .unwrap();
        let dropped = (0..2000)
            .filter(|_| faults.check(0, 1, "Vote") == FaultAction::Drop)
            .count();
        assert!((700..1300).contains(&dropped), "dropped {dropped} of 2000");

        faults
            .set(rules(
                r#"{"rules":[{"action":"delay","delay_ms":10,"jitter_ms":5}]}"#,
            ))
            .unwrap();
        for _ in 0..500 {
            match faults.check(0, 1, "Vote") {
                FaultAction::Delay(d) => assert!((10..=15).contains(&d.as_millis()), "{d:?}"),
                other => panic!("expected a delay, got {other:?}"),
            }
        }
    }
}
