//! The bank invariant: transfers move money between accounts in one transaction, so every
//! snapshot read must see every account (they are created before the workload starts) and
//! balances that add up to the initial total. Negative balances are allowed.

use std::fmt::Write as _;

use super::{ms, push_capped, Report, Verdict};
use crate::history::BankRead;

const CHECKER: &str = "bank";

/// Checks that every read saw exactly `accounts` balances, all present, summing to `total`.
///
/// `checked` is the number of reads. No reads at all gives [`Verdict::Unknown`]. Each bad read
/// is listed (capped) with its index, process, node, read version, times and what was wrong.
pub fn check_bank(reads: &[BankRead], accounts: u32, total: i64) -> Report {
    if reads.is_empty() {
        return Report {
            checker: CHECKER,
            verdict: Verdict::Unknown,
            checked: 0,
            explanation: "no bank reads were recorded".to_string(),
        };
    }
    let bad: Vec<String> = reads
        .iter()
        .enumerate()
        .filter_map(|(i, read)| {
            let problems = problems(read, accounts, total);
            (!problems.is_empty()).then(|| {
                format!(
                    "read #{i} p{} n{} version {} @{}–{} ms: {}",
                    read.process,
                    read.node,
                    read.version,
                    ms(read.invoke),
                    ms(read.complete),
                    problems.join("; ")
                )
            })
        })
        .collect();
    let (verdict, explanation) = if bad.is_empty() {
        (
            Verdict::Ok,
            format!(
                "all {} reads saw {accounts} accounts summing to {total}",
                reads.len()
            ),
        )
    } else {
        let mut text = format!(
            "{} of {} reads broke the invariant ({accounts} accounts summing to {total}):",
            bad.len(),
            reads.len()
        );
        push_capped(&mut text, "  ", bad);
        (Verdict::Violation, text)
    };
    Report {
        checker: CHECKER,
        verdict,
        checked: reads.len() as u64,
        explanation,
    }
}

/// What is wrong with one read (empty if nothing).
fn problems(read: &BankRead, accounts: u32, total: i64) -> Vec<String> {
    let mut problems = Vec::new();
    if read.balances.len() != accounts as usize {
        problems.push(format!(
            "{} balances instead of {accounts}",
            read.balances.len()
        ));
    }
    let absent: Vec<usize> = read
        .balances
        .iter()
        .enumerate()
        .filter(|(_, b)| b.is_none())
        .map(|(i, _)| i)
        .collect();
    if !absent.is_empty() {
        let mut text = format!("{} accounts absent:", absent.len());
        for account in absent.iter().take(super::MAX_LISTED) {
            let _ = write!(text, " {account}");
        }
        if absent.len() > super::MAX_LISTED {
            text.push_str(" …");
        }
        problems.push(text);
    }
    // i128: a corrupted balance near i64::MAX must not overflow the sum.
    let sum: i128 = read.balances.iter().flatten().map(|&b| i128::from(b)).sum();
    if sum != i128::from(total) {
        let what = if absent.is_empty() {
            "sum"
        } else {
            "sum of present balances"
        };
        problems.push(format!(
            "{what} {sum} instead of {total} (off by {})",
            sum - i128::from(total)
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(balances: Vec<Option<i64>>) -> BankRead {
        BankRead {
            process: 3,
            node: 1,
            version: 42,
            invoke: 1_000_000,
            complete: 2_500_000,
            balances,
        }
    }

    #[test]
    fn conserved_totals_pass_even_with_negative_balances() {
        let reads = vec![
            read(vec![Some(10), Some(10), Some(10)]),
            read(vec![Some(-5), Some(25), Some(10)]),
            read(vec![Some(30), Some(0), Some(0)]),
        ];
        let report = check_bank(&reads, 3, 30);
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
        assert_eq!(report.checked, 3);
        assert!(report.passed());
    }

    #[test]
    fn a_wrong_sum_is_a_violation_naming_the_read() {
        let reads = vec![
            read(vec![Some(10), Some(10), Some(10)]),
            read(vec![Some(10), Some(10), Some(11)]),
        ];
        let report = check_bank(&reads, 3, 30);
        assert_eq!(report.verdict, Verdict::Violation);
        assert!(
            report.explanation.contains("1 of 2 reads"),
            "{}",
            report.explanation
        );
        assert!(report
            .explanation
            .contains("read #1 p3 n1 version 42 @1.000–2.500 ms"));
        assert!(report
            .explanation
            .contains("sum 31 instead of 30 (off by 1)"));
        assert!(!report.explanation.contains("read #0"));
    }

    #[test]
    fn an_absent_account_is_a_violation_even_if_the_sum_matches() {
        let reads = vec![read(vec![Some(30), None, Some(0)])];
        let report = check_bank(&reads, 3, 30);
        assert_eq!(report.verdict, Verdict::Violation);
        assert!(
            report.explanation.contains("1 accounts absent: 1"),
            "{}",
            report.explanation
        );
        assert!(!report.explanation.contains("instead of 30"));
    }

    #[test]
    fn all_absent_is_a_violation_too() {
        let report = check_bank(&[read(vec![None, None])], 2, 20);
        assert_eq!(report.verdict, Verdict::Violation);
        assert!(
            report.explanation.contains("2 accounts absent: 0 1"),
            "{}",
            report.explanation
        );
    }

    #[test]
    fn a_wrong_number_of_balances_is_a_violation() {
        let short = check_bank(&[read(vec![Some(15), Some(15)])], 3, 30);
        assert_eq!(short.verdict, Verdict::Violation);
        assert!(
            short.explanation.contains("2 balances instead of 3"),
            "{}",
            short.explanation
        );
        let long = check_bank(&[read(vec![Some(10), Some(10), Some(10), Some(0)])], 3, 30);
        assert_eq!(long.verdict, Verdict::Violation);
        assert!(long.explanation.contains("4 balances instead of 3"));
    }

    #[test]
    fn no_reads_is_unknown() {
        let report = check_bank(&[], 3, 30);
        assert_eq!(report.verdict, Verdict::Unknown);
        assert_eq!(report.checked, 0);
        assert!(report.explanation.contains("no bank reads"));
    }

    #[test]
    fn huge_balances_do_not_overflow() {
        let report = check_bank(&[read(vec![Some(i64::MAX), Some(i64::MAX)])], 2, 0);
        assert_eq!(report.verdict, Verdict::Violation);
        let report = check_bank(&[read(vec![Some(i64::MAX), Some(i64::MIN + 1)])], 2, 0);
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
    }

    #[test]
    fn many_bad_reads_are_capped() {
        let reads: Vec<BankRead> = (0..50).map(|_| read(vec![Some(1)])).collect();
        let report = check_bank(&reads, 1, 0);
        assert_eq!(report.verdict, Verdict::Violation);
        assert!(report.explanation.contains("50 of 50 reads"));
        assert!(
            report.explanation.contains("… and 40 more"),
            "{}",
            report.explanation
        );
        assert!(report.explanation.lines().count() <= 12);
    }
}
