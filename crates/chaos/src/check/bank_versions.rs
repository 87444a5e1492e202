//! The bank at each read's version: a read at version `R` must show exactly the transfers that
//! committed at or below `R`, in every account. This is stronger than the conserved total: a
//! read that took one group at `R` and another at some other version adds up whenever the
//! transfers in between stayed inside one group, and this check catches it (a data group
//! serving a read at `R` before applying a commit at or below `R`, docs/sharding.md §5.2). On
//! a sharded cluster a transfer across groups commits by two-phase commit at one version `C`:
//! a read at `R ≥ C` must show both halves (the participant's piece resolved at `C`, or the
//! read waiting for its lock), a read below `C` neither, whichever group it asks first.
//!
//! ```text
//!  transfers Ok (commit version C) ─ sorted by C ─┐
//!  reads (version R) ─ sorted by R ───────────────┴▶ balances(R) = initial + Σ_{C ≤ R} moves
//!     observed ≠ balances(R)? ─▶ unknown transfers taken as applied (the fewest that
//!                                 explain it, each at most once, invoked before the read
//!                                 completed, then seen by every later read)
//!                                 ─▶ else a violation naming the read, the
//!                                 accounts off and the transfers committed around R
//! ```

use std::fmt::Write as _;

use super::{ms, push_capped, Report, Verdict};
use crate::history::{BankRead, TransferOp, WriteOutcome};

const CHECKER: &str = "bank-versions";

/// Most subsets of unknown transfers tried for one read before the read is undecided.
const MAX_TRIES: u64 = 200_000;

/// Committed transfers listed on each side of a bad read's version.
const AROUND: usize = 3;

/// Checks every read against the transfers committed at or below its version; each of the
/// `accounts` starts with `initial`. `None` when a committed transfer has no commit version
/// (a history written before they were recorded): this check cannot run on it.
///
/// `checked` is the number of reads. An unknown transfer may have committed at any version
/// after its invocation; it is taken as applied from the first read that needs it on, once,
/// which a later read must agree with. A read that no such choice explains is a violation;
/// one the bounded search could not settle makes the verdict [`Verdict::Unknown`].
pub fn check_bank_versions(
    transfers: &[TransferOp],
    reads: &[BankRead],
    accounts: u32,
    initial: i64,
) -> Option<Report> {
    let mut committed: Vec<(i64, &TransferOp)> = Vec::new();
    for t in transfers.iter().filter(|t| t.outcome == WriteOutcome::Ok) {
        committed.push((t.commit_version?, t));
    }
    if reads.is_empty() {
        return Some(Report {
            checker: CHECKER,
            verdict: Verdict::Unknown,
            checked: 0,
            explanation: "no bank reads were recorded".to_owned(),
        });
    }
    committed.sort_by_key(|&(v, _)| v);
    let unknown: Vec<&TransferOp> = transfers
        .iter()
        .filter(|t| t.outcome == WriteOutcome::Unknown)
        .collect();
    let mut order: Vec<usize> = (0..reads.len()).collect();
    order.sort_by_key(|&i| (reads[i].version, i));

    let n = accounts as usize;
    let mut balances: Vec<i128> = vec![i128::from(initial); n];
    let mut next = 0usize;
    let mut applied = vec![false; unknown.len()];
    let mut bad: Vec<String> = Vec::new();
    let mut undecided: Vec<String> = Vec::new();
    for &i in &order {
        let read = &reads[i];
        while let Some(&(v, t)) = committed.get(next) {
            if v > read.version {
                break;
            }
            apply(&mut balances, t, 1);
            next += 1;
        }
        let Some(diff) = difference(read, &balances) else {
            bad.push(format!(
                "{}: {} balances, some absent, where {n} accounts were expected",
                describe(i, read),
                read.balances.len()
            ));
            continue;
        };
        if diff.iter().all(|&d| d == 0) {
            continue;
        }
        // Unknown transfers not yet taken as applied that could be visible to this read.
        let candidates: Vec<usize> = (0..unknown.len())
            .filter(|&u| !applied[u] && unknown[u].invoke < read.complete)
            .collect();
        let mut tries = 0u64;
        match explain(&diff, &candidates, &unknown, &mut tries) {
            Search::Found(chosen) => {
                for u in chosen {
                    applied[u] = true;
                    apply(&mut balances, unknown[u], 1);
                }
            }
            Search::Impossible => {
                bad.push(violation_text(i, read, &balances, &diff, &committed, next))
            }
            Search::OutOfBudget => undecided.push(format!(
                "{}: {} unknown transfers could explain it; {MAX_TRIES} choices tried",
                describe(i, read),
                candidates.len()
            )),
        }
    }
    let summary = format!(
        "{} reads, {} committed transfers with their versions, {} unknown ({} taken as applied)",
        reads.len(),
        committed.len(),
        unknown.len(),
        applied.iter().filter(|&&a| a).count()
    );
    let (verdict, explanation) = if !bad.is_empty() {
        let mut text = format!(
            "{} of {} reads do not show exactly the transfers committed at or below their \
             version; {summary}:",
            bad.len(),
            reads.len()
        );
        push_capped(&mut text, "  ", bad);
        (Verdict::Violation, text)
    } else if !undecided.is_empty() {
        let mut text = format!("{} reads could not be decided; {summary}:", undecided.len());
        push_capped(&mut text, "  ", undecided);
        (Verdict::Unknown, text)
    } else {
        (
            Verdict::Ok,
            format!(
                "every read shows exactly the transfers committed at or below its version; \
                 {summary}"
            ),
        )
    };
    Some(Report {
        checker: CHECKER,
        verdict,
        checked: reads.len() as u64,
        explanation,
    })
}

/// Moves `t`'s amount (`sign` = 1) or takes it back (`-1`).
fn apply(balances: &mut [i128], t: &TransferOp, sign: i128) {
    let amount = i128::from(t.amount) * sign;
    if let Some(b) = balances.get_mut(t.from as usize) {
        *b -= amount;
    }
    if let Some(b) = balances.get_mut(t.to as usize) {
        *b += amount;
    }
}

/// Observed minus expected, by account; `None` when an account is absent or the count differs.
fn difference(read: &BankRead, expected: &[i128]) -> Option<Vec<i128>> {
    if read.balances.len() != expected.len() {
        return None;
    }
    read.balances
        .iter()
        .zip(expected)
        .map(|(b, e)| b.map(|b| i128::from(b) - e))
        .collect()
}

/// What the search over unknown transfers found.
enum Search {
    /// These unknown transfers (indexes), applied, explain the read.
    Found(Vec<usize>),
    /// No choice of them does.
    Impossible,
    /// The budget ran out first.
    OutOfBudget,
}

/// A subset of `candidates` whose moves add up to `diff`, smallest first: every single
/// transfer, then every pair, and so on (depth-first over the subsets of each size, in index
/// order, pruned when the transfers left to pick cannot move enough money), so the fewest
/// unknown transfers are taken as applied, and a read that one transfer explains is explained
/// at once however many unknown transfers came before it.
fn explain(
    diff: &[i128],
    candidates: &[usize],
    unknown: &[&TransferOp],
    tries: &mut u64,
) -> Search {
    /// Whether some `left` more of `candidates[from..]` bring `rest` to zero; `None` when the
    /// budget ran out.
    #[allow(clippy::too_many_arguments)]
    fn go(
        rest: &mut Vec<i128>,
        from: usize,
        left: usize,
        largest: i128,
        candidates: &[usize],
        unknown: &[&TransferOp],
        chosen: &mut Vec<usize>,
        tries: &mut u64,
    ) -> Option<bool> {
        *tries += 1;
        if *tries > MAX_TRIES {
            return None;
        }
        if left == 0 {
            return Some(rest.iter().all(|&d| d == 0));
        }
        // Each transfer changes the sum of |rest| by at most twice its amount.
        let off: i128 = rest.iter().map(|d| d.abs()).sum();
        if off > 2 * largest * left as i128 {
            return Some(false);
        }
        for (k, &u) in candidates.iter().enumerate().skip(from) {
            if candidates.len() - k < left {
                break;
            }
            apply(rest, unknown[u], -1);
            chosen.push(u);
            match go(
                rest,
                k + 1,
                left - 1,
                largest,
                candidates,
                unknown,
                chosen,
                tries,
            ) {
                Some(true) => return Some(true),
                None => return None,
                Some(false) => {}
            }
            chosen.pop();
            apply(rest, unknown[u], 1);
        }
        Some(false)
    }
    if diff.iter().all(|&d| d == 0) {
        return Search::Found(Vec::new());
    }
    let largest = candidates
        .iter()
        .map(|&u| i128::from(unknown[u].amount).abs())
        .max()
        .unwrap_or(0);
    for size in 1..=candidates.len() {
        let mut rest = diff.to_vec();
        let mut chosen = Vec::new();
        match go(
            &mut rest,
            0,
            size,
            largest,
            candidates,
            unknown,
            &mut chosen,
            tries,
        ) {
            Some(true) => return Search::Found(chosen),
            None => return Search::OutOfBudget,
            Some(false) => {}
        }
    }
    Search::Impossible
}

/// `read #3 p1 n2 version 42 @1.000–2.000 ms`.
fn describe(i: usize, read: &BankRead) -> String {
    format!(
        "read #{i} p{} n{} version {} @{}–{} ms",
        read.process,
        read.node,
        read.version,
        ms(read.invoke),
        ms(read.complete)
    )
}

/// A bad read: what it saw, what the committed transfers give, the accounts off, and the
/// transfers committed just below and above its version (`next` = the first above).
fn violation_text(
    i: usize,
    read: &BankRead,
    expected: &[i128],
    diff: &[i128],
    committed: &[(i64, &TransferOp)],
    next: usize,
) -> String {
    let shown = |b: &[Option<i64>]| {
        let parts: Vec<String> = b
            .iter()
            .map(|b| b.map_or("-".to_owned(), |b| b.to_string()))
            .collect();
        format!("[{}]", parts.join(" "))
    };
    let expected_text: Vec<String> = expected.iter().map(i128::to_string).collect();
    let mut text = format!(
        "{}: balances {}, but the {next} transfers committed at or below it give [{}]; off:",
        describe(i, read),
        shown(&read.balances),
        expected_text.join(" ")
    );
    for (account, d) in diff.iter().enumerate().filter(|(_, &d)| d != 0) {
        let _ = write!(text, " account {account} {d:+}");
    }
    let around = |(v, t): &(i64, &TransferOp)| {
        format!(
            "{} from {} to {} at version {v} (p{} n{} @{}–{} ms)",
            t.amount,
            t.from,
            t.to,
            t.process,
            t.node,
            ms(t.invoke),
            t.complete.map_or("?".to_owned(), ms)
        )
    };
    let below: Vec<String> = committed[next.saturating_sub(AROUND)..next]
        .iter()
        .map(around)
        .collect();
    let above: Vec<String> = committed[next..(next + AROUND).min(committed.len())]
        .iter()
        .map(around)
        .collect();
    if !below.is_empty() {
        let _ = write!(text, "; committed just below: {}", below.join(", "));
    }
    if !above.is_empty() {
        let _ = write!(text, "; just above: {}", above.join(", "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(
        from: u32,
        to: u32,
        amount: i64,
        outcome: WriteOutcome,
        version: Option<i64>,
    ) -> TransferOp {
        TransferOp {
            process: 1,
            node: 0,
            from,
            to,
            amount,
            invoke: 1_000_000,
            complete: (outcome != WriteOutcome::Unknown).then_some(2_000_000),
            outcome,
            code: None,
            commit_version: version,
        }
    }

    fn read(version: i64, balances: &[i64]) -> BankRead {
        BankRead {
            process: 2,
            node: 1,
            version,
            invoke: 3_000_000,
            complete: 4_000_000,
            balances: balances.iter().copied().map(Some).collect(),
        }
    }

    #[test]
    fn reads_showing_exactly_the_transfers_at_or_below_their_version_pass() {
        let transfers = [
            transfer(0, 2, 5, WriteOutcome::Ok, Some(10)),
            transfer(1, 3, 7, WriteOutcome::Ok, Some(20)),
            // Refused: never applied.
            transfer(0, 1, 50, WriteOutcome::Failed, None),
        ];
        let reads = [
            read(5, &[100, 100, 100, 100]),
            read(10, &[95, 100, 105, 100]),
            read(19, &[95, 100, 105, 100]),
            read(25, &[95, 93, 105, 107]),
        ];
        let r = check_bank_versions(&transfers, &reads, 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Ok, "{}", r.explanation);
        assert_eq!(r.checked, 4);
    }

    #[test]
    fn a_read_missing_one_group_s_commit_at_its_version_is_caught_though_the_sum_holds() {
        // Accounts 0-1 in one group, 2-3 in another; each transfer stays in its group. The
        // read at 25 shows the first group at 25 but the second as before version 20.
        let transfers = [
            transfer(0, 1, 5, WriteOutcome::Ok, Some(10)),
            transfer(2, 3, 7, WriteOutcome::Ok, Some(20)),
        ];
        let reads = [read(25, &[95, 105, 100, 100])];
        let r = check_bank_versions(&transfers, &reads, 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Violation, "{}", r.explanation);
        for part in [
            "read #0 p2 n1 version 25",
            "balances [95 105 100 100], but the 2 transfers committed at or below it give \
             [95 105 93 107]",
            "account 2 +7 account 3 -7",
            "committed just below: 5 from 0 to 1 at version 10",
        ] {
            assert!(r.explanation.contains(part), "{part}? {}", r.explanation);
        }
        // A read at 15 sees the second transfer, committed above it: caught too.
        let early = [read(15, &[95, 105, 93, 107])];
        let r = check_bank_versions(&transfers, &early, 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Violation, "{}", r.explanation);
        assert!(
            r.explanation
                .contains("just above: 7 from 2 to 3 at version 20"),
            "{}",
            r.explanation
        );
    }

    #[test]
    fn a_transfer_across_groups_is_seen_whole_at_or_above_its_version_and_not_below() {
        // Accounts 0-1 in one group, 2-3 in another; the transfer from 1 to 2 reaches both and
        // commits at 20 (two-phase commit).
        let transfers = [transfer(1, 2, 6, WriteOutcome::Ok, Some(20))];
        let whole = [
            read(19, &[100, 100, 100, 100]),
            read(20, &[100, 94, 106, 100]),
        ];
        let r = check_bank_versions(&transfers, &whole, 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Ok, "{}", r.explanation);
        // At 25, the second group's piece not yet resolved at 20 and the read not waiting for
        // its lock: half a transfer (the bank checker sees the sum too).
        let half = [read(25, &[100, 94, 100, 100])];
        let r = check_bank_versions(&transfers, &half, 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Violation, "{}", r.explanation);
        assert!(
            r.explanation
                .contains("off: account 2 -6; committed just below: 6 from 1 to 2"),
            "{}",
            r.explanation
        );
        // Below 20, the prepared piece written early in one group: caught as well.
        let early = [read(15, &[100, 100, 106, 100])];
        let r = check_bank_versions(&transfers, &early, 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Violation, "{}", r.explanation);
    }

    #[test]
    fn an_unknown_transfer_may_apply_once_and_stays_applied() {
        let transfers = [
            transfer(0, 1, 5, WriteOutcome::Ok, Some(10)),
            transfer(2, 3, 4, WriteOutcome::Unknown, None),
        ];
        let fine = [
            read(12, &[95, 105, 100, 100]),
            read(30, &[95, 105, 96, 104]),
            read(40, &[95, 105, 96, 104]),
        ];
        let r = check_bank_versions(&transfers, &fine, 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Ok, "{}", r.explanation);
        assert!(r.explanation.contains("1 unknown (1 taken as applied)"));
        // Once seen, it cannot vanish from a later read.
        let flicker = [
            read(30, &[95, 105, 96, 104]),
            read(40, &[95, 105, 100, 100]),
        ];
        let r = check_bank_versions(&transfers, &flicker, 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Violation, "{}", r.explanation);
        assert!(r.explanation.contains("read #1"), "{}", r.explanation);
        // Nor be seen by a read that completed before it was invoked.
        let mut late = transfers.clone();
        late[1].invoke = 50_000_000;
        let r = check_bank_versions(&late, &fine[1..2], 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Violation, "{}", r.explanation);
    }

    #[test]
    fn the_fewest_unknown_transfers_explain_a_read_however_many_came_before() {
        // 30 unknown transfers in a ring (each account gives 1 to the next, which nets to
        // nothing over the ring) before the one the read shows: 2 from 5 to 3. A search over
        // subsets in index order would wander among the ring's subsets; the smallest first
        // finds the one transfer at once, and takes nothing else as applied.
        let mut transfers: Vec<TransferOp> = (0..30)
            .map(|i| transfer(i % 8, (i + 1) % 8, 1, WriteOutcome::Unknown, None))
            .collect();
        transfers.push(transfer(5, 3, 2, WriteOutcome::Unknown, None));
        let reads = [read(10, &[100, 100, 100, 102, 100, 98, 100, 100])];
        let r = check_bank_versions(&transfers, &reads, 8, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Ok, "{}", r.explanation);
        assert!(
            r.explanation.contains("31 unknown (1 taken as applied)"),
            "{}",
            r.explanation
        );
        // A read no subset explains is still a violation when the search can finish.
        let few = [
            transfer(0, 1, 1, WriteOutcome::Unknown, None),
            transfer(2, 3, 4, WriteOutcome::Unknown, None),
        ];
        let r = check_bank_versions(&few, &[read(10, &[99, 101, 103, 97])], 4, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Violation, "{}", r.explanation);
    }

    #[test]
    fn histories_without_commit_versions_are_not_checked_and_no_reads_is_unknown() {
        let old = [transfer(0, 1, 5, WriteOutcome::Ok, None)];
        assert!(check_bank_versions(&old, &[read(5, &[100, 100])], 2, 100).is_none());
        let r = check_bank_versions(&[], &[], 2, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Unknown);
        let absent = BankRead {
            balances: vec![Some(100), None],
            ..read(5, &[])
        };
        let r = check_bank_versions(&[], &[absent], 2, 100).unwrap();
        assert_eq!(r.verdict, Verdict::Violation, "{}", r.explanation);
        assert!(r.explanation.contains("some absent"), "{}", r.explanation);
    }
}
