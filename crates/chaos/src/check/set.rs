//! The set workload's check: after the cluster healed, every replica must serve the same set,
//! holding every acknowledged insert, no refused one, and nothing that was never inserted.
//! Inserts with an unknown outcome may be present or absent, but the same on every replica.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{ms, Report, Verdict};
use crate::history::{SetAdd, SetFinal, WriteOutcome};

const CHECKER: &str = "set";

/// How many elements each category shows per replica.
const SAMPLE: usize = 5;

/// Checks the final reads of the set against the inserts.
///
/// Violations: an acknowledged (`Ok`) element missing from a replica (lost write), an element
/// present that was never inserted (phantom), a `Failed` element present (a refused write took
/// effect), and replicas disagreeing on any element. If an element was inserted more than once,
/// it counts as acknowledged if any insert was `Ok`, as refused only if all were `Failed`.
/// `checked` is the number of inserts. No final reads gives [`Verdict::Unknown`].
pub fn check_set(adds: &[SetAdd], finals: &[SetFinal]) -> Report {
    let checked = adds.len() as u64;
    if finals.is_empty() {
        return Report {
            checker: CHECKER,
            verdict: Verdict::Unknown,
            checked,
            explanation: format!("no final set reads were recorded ({} inserts)", adds.len()),
        };
    }

    // Element → (combined outcome, index of an insert that decided it).
    let mut attempted: BTreeMap<u64, (WriteOutcome, usize)> = BTreeMap::new();
    for (i, add) in adds.iter().enumerate() {
        let rank = |o: WriteOutcome| match o {
            WriteOutcome::Failed => 0,
            WriteOutcome::Unknown => 1,
            WriteOutcome::Ok => 2,
        };
        attempted
            .entry(add.element)
            .and_modify(|(outcome, index)| {
                if rank(add.outcome) > rank(*outcome) {
                    *outcome = add.outcome;
                    *index = i;
                }
            })
            .or_insert((add.outcome, i));
    }
    let describe = |element: u64| -> String {
        match attempted.get(&element) {
            None => format!("{element} (never inserted)"),
            Some(&(outcome, i)) => {
                let add = &adds[i];
                let complete = add.complete.map_or_else(|| "?".to_string(), ms);
                let outcome = match outcome {
                    WriteOutcome::Ok => "ok",
                    WriteOutcome::Failed => "failed",
                    WriteOutcome::Unknown => "unknown",
                };
                format!(
                    "{element} (#{i} p{} n{} {outcome} @{}–{complete} ms)",
                    add.process,
                    add.node,
                    ms(add.invoke)
                )
            }
        }
    };

    let sets: Vec<BTreeSet<u64>> = finals
        .iter()
        .map(|f| f.elements.iter().copied().collect())
        .collect();
    let mut lines = Vec::new();
    let (mut lost, mut phantom, mut refused) = (0usize, 0usize, 0usize);
    for (final_read, set) in finals.iter().zip(&sets) {
        let missing: Vec<u64> = attempted
            .iter()
            .filter(|(e, (o, _))| *o == WriteOutcome::Ok && !set.contains(e))
            .map(|(&e, _)| e)
            .collect();
        let invented: Vec<u64> = set
            .iter()
            .copied()
            .filter(|e| !attempted.contains_key(e))
            .collect();
        let undone: Vec<u64> = set
            .iter()
            .copied()
            .filter(|e| matches!(attempted.get(e), Some((WriteOutcome::Failed, _))))
            .collect();
        lost += missing.len();
        phantom += invented.len();
        refused += undone.len();
        if missing.is_empty() && invented.is_empty() && undone.is_empty() {
            continue;
        }
        let mut line = format!(
            "replica n{} (version {}, {} elements):",
            final_read.node,
            final_read.version,
            set.len()
        );
        for (what, elements) in [
            ("acknowledged inserts missing", &missing),
            ("elements never inserted", &invented),
            ("refused inserts present", &undone),
        ] {
            if !elements.is_empty() {
                let sample: Vec<String> =
                    elements.iter().take(SAMPLE).map(|&e| describe(e)).collect();
                let more = elements.len().saturating_sub(SAMPLE);
                let _ = write!(
                    line,
                    "\n    {} {what}: {}",
                    elements.len(),
                    sample.join(", ")
                );
                if more > 0 {
                    let _ = write!(line, ", … and {more} more");
                }
            }
        }
        lines.push(line);
    }

    // Elements some replicas have and others lack.
    let union: BTreeSet<u64> = sets.iter().flatten().copied().collect();
    let split: Vec<u64> = union
        .iter()
        .copied()
        .filter(|e| !sets.iter().all(|s| s.contains(e)))
        .collect();
    if !split.is_empty() {
        let mut line = format!("replicas disagree on {} elements:", split.len());
        for &element in split.iter().take(SAMPLE) {
            let on = |present: bool| -> String {
                let nodes: Vec<String> = finals
                    .iter()
                    .zip(&sets)
                    .filter(|(_, s)| s.contains(&element) == present)
                    .map(|(f, _)| format!("n{}", f.node))
                    .collect();
                nodes.join(",")
            };
            let _ = write!(
                line,
                "\n    {} present on {}, absent on {}",
                describe(element),
                on(true),
                on(false)
            );
        }
        if split.len() > SAMPLE {
            let _ = write!(line, "\n    … and {} more", split.len() - SAMPLE);
        }
        lines.push(line);
    }

    let count = |o: WriteOutcome| attempted.values().filter(|(x, _)| *x == o).count();
    let unknown_present = attempted
        .iter()
        .filter(|(e, (o, _))| *o == WriteOutcome::Unknown && sets[0].contains(e))
        .count();
    let summary = format!(
        "{} inserts of {} elements ({} ok, {} failed, {} unknown), {} replicas",
        adds.len(),
        attempted.len(),
        count(WriteOutcome::Ok),
        count(WriteOutcome::Failed),
        count(WriteOutcome::Unknown),
        finals.len()
    );
    let (verdict, explanation) = if lines.is_empty() {
        (
            Verdict::Ok,
            format!(
                "{summary} agree on {} elements; no acknowledged insert lost ({unknown_present} \
                 of the unknown ones present)",
                sets[0].len()
            ),
        )
    } else {
        let mut text = format!(
            "{summary}: {lost} acknowledged inserts missing, {phantom} elements never inserted, \
             {refused} refused inserts present (counted per replica), {} elements on some \
             replicas only",
            split.len()
        );
        for line in lines {
            text.push_str("\n  ");
            text.push_str(&line);
        }
        (Verdict::Violation, text)
    };
    Report {
        checker: CHECKER,
        verdict,
        checked,
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(element: u64, outcome: WriteOutcome) -> SetAdd {
        SetAdd {
            process: element % 4,
            node: (element % 3) as usize,
            element,
            invoke: element * 1_000_000,
            complete: (outcome != WriteOutcome::Unknown).then_some(element * 1_000_000 + 500_000),
            outcome,
        }
    }

    fn fin(node: usize, elements: &[u64]) -> SetFinal {
        SetFinal {
            node,
            version: 100,
            elements: elements.to_vec(),
        }
    }

    fn adds() -> Vec<SetAdd> {
        vec![
            add(1, WriteOutcome::Ok),
            add(2, WriteOutcome::Ok),
            add(3, WriteOutcome::Failed),
            add(4, WriteOutcome::Unknown),
            add(5, WriteOutcome::Unknown),
        ]
    }

    #[test]
    fn agreeing_replicas_with_every_ack_pass() {
        let finals = [fin(0, &[1, 2, 4]), fin(1, &[1, 2, 4]), fin(2, &[1, 2, 4])];
        let report = check_set(&adds(), &finals);
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
        assert_eq!(report.checked, 5);
        assert!(
            report.explanation.contains("1 of the unknown ones present"),
            "{}",
            report.explanation
        );
    }

    #[test]
    fn unknown_inserts_may_be_absent_everywhere() {
        let report = check_set(&adds(), &[fin(0, &[1, 2]), fin(1, &[2, 1])]);
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
    }

    #[test]
    fn a_lost_acknowledged_insert_is_reported_per_replica() {
        let finals = [fin(0, &[1, 2]), fin(1, &[1])];
        let report = check_set(&adds(), &finals);
        assert_eq!(report.verdict, Verdict::Violation);
        let text = &report.explanation;
        assert!(text.contains("1 acknowledged inserts missing"), "{text}");
        assert!(
            text.contains("replica n1 (version 100, 1 elements)"),
            "{text}"
        );
        assert!(text.contains("2 (#1 p2 n2 ok @2.000–2.500 ms)"), "{text}");
        assert!(!text.contains("replica n0"), "{text}");
        assert!(text.contains("present on n0, absent on n1"), "{text}");
    }

    #[test]
    fn lost_everywhere_is_still_a_violation() {
        let report = check_set(&adds(), &[fin(0, &[1]), fin(1, &[1])]);
        assert_eq!(report.verdict, Verdict::Violation);
        assert!(
            report
                .explanation
                .contains("2 acknowledged inserts missing"),
            "{}",
            report.explanation
        );
        assert!(report
            .explanation
            .contains("0 elements on some replicas only"));
    }

    #[test]
    fn a_phantom_element_is_a_violation() {
        let report = check_set(&adds(), &[fin(0, &[1, 2, 99]), fin(1, &[1, 2, 99])]);
        assert_eq!(report.verdict, Verdict::Violation);
        assert!(
            report.explanation.contains("2 elements never inserted"),
            "{}",
            report.explanation
        );
        assert!(report.explanation.contains("99 (never inserted)"));
    }

    #[test]
    fn a_refused_insert_present_is_a_violation() {
        let report = check_set(&adds(), &[fin(0, &[1, 2, 3])]);
        assert_eq!(report.verdict, Verdict::Violation);
        assert!(
            report.explanation.contains("1 refused inserts present"),
            "{}",
            report.explanation
        );
        assert!(report
            .explanation
            .contains("3 (#2 p3 n0 failed @3.000–3.500 ms)"));
    }

    #[test]
    fn replicas_disagreeing_on_an_unknown_insert_is_a_violation() {
        let report = check_set(
            &adds(),
            &[fin(0, &[1, 2, 4]), fin(1, &[1, 2]), fin(2, &[1, 2, 4])],
        );
        assert_eq!(report.verdict, Verdict::Violation);
        let text = &report.explanation;
        assert!(text.contains("replicas disagree on 1 elements"), "{text}");
        assert!(
            text.contains("4 (#3 p0 n1 unknown @4.000–? ms) present on n0,n2, absent on n1"),
            "{text}"
        );
    }

    #[test]
    fn a_duplicate_insert_counts_as_acknowledged_if_any_copy_was() {
        let mut adds = adds();
        adds.push(add(3, WriteOutcome::Ok));
        let report = check_set(&adds, &[fin(0, &[1, 2])]);
        assert_eq!(report.verdict, Verdict::Violation);
        assert!(
            report.explanation.contains("3 (#5 "),
            "{}",
            report.explanation
        );
        let report = check_set(&adds, &[fin(0, &[1, 2, 3])]);
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
    }

    #[test]
    fn no_finals_is_unknown_and_no_adds_with_empty_finals_is_ok() {
        let report = check_set(&adds(), &[]);
        assert_eq!(report.verdict, Verdict::Unknown);
        assert_eq!(report.checked, 5);
        let report = check_set(&[], &[fin(0, &[]), fin(1, &[])]);
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
    }

    #[test]
    fn samples_are_capped() {
        let adds: Vec<SetAdd> = (0..100).map(|e| add(e, WriteOutcome::Ok)).collect();
        let report = check_set(&adds, &[fin(0, &[])]);
        assert_eq!(report.verdict, Verdict::Violation);
        assert!(report
            .explanation
            .contains("100 acknowledged inserts missing"));
        assert!(
            report.explanation.contains("… and 95 more"),
            "{}",
            report.explanation
        );
        assert!(report.explanation.len() < 1_000);
    }
}
