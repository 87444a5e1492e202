//! Hand-made histories, one per anomaly.

use super::*;
use crate::history::{ListAppendTxn, MicroOp, WriteOutcome};

fn r(key: u64, value: &[u64]) -> MicroOp {
    MicroOp::R {
        key,
        value: value.to_vec(),
    }
}

fn ap(key: u64, element: u64) -> MicroOp {
    MicroOp::Append { key, element }
}

/// A transaction between `invoke` and `complete` ms.
fn txn(ops: Vec<MicroOp>, outcome: WriteOutcome, invoke: u64, complete: u64) -> ListAppendTxn {
    ListAppendTxn {
        process: 0,
        node: 0,
        read_version: Some(1),
        commit_version: (outcome == WriteOutcome::Ok).then_some(2),
        invoke: invoke * 1_000_000,
        complete: (outcome != WriteOutcome::Unknown).then_some(complete * 1_000_000),
        outcome,
        ops,
        code: None,
    }
}

/// A committed transaction concurrent with every other such one (no real-time order).
fn ok(ops: Vec<MicroOp>) -> ListAppendTxn {
    txn(ops, WriteOutcome::Ok, 0, 100)
}

fn violation(txns: &[ListAppendTxn], class: &str, names: &[&str]) -> String {
    let report = check_list_append(txns);
    assert_eq!(report.verdict, Verdict::Violation, "{}", report.explanation);
    let text = report.explanation;
    assert!(
        text.contains(&format!("{class} cycle")) || text.contains(&format!("{class}: ")),
        "{class}? {text}"
    );
    for n in names {
        assert!(text.contains(n), "{n}? {text}");
    }
    text
}

#[test]
fn a_serializable_history_passes() {
    let txns = vec![
        txn(vec![r(1, &[]), ap(1, 1)], WriteOutcome::Ok, 0, 10),
        txn(vec![r(1, &[1]), ap(1, 2)], WriteOutcome::Ok, 20, 30),
        txn(
            vec![r(1, &[1, 2]), r(2, &[]), ap(2, 3)],
            WriteOutcome::Ok,
            40,
            50,
        ),
        // Concurrent with the next one: both read la/2 before the other's append.
        txn(
            vec![r(1, &[1, 2]), r(2, &[3]), ap(1, 4)],
            WriteOutcome::Ok,
            60,
            80,
        ),
        txn(vec![r(2, &[3]), ap(2, 5)], WriteOutcome::Ok, 61, 79),
        // Failed: its element is never read.
        txn(vec![r(1, &[1, 2]), ap(1, 6)], WriteOutcome::Failed, 62, 70),
        // Unknown and never seen: left out.
        txn(vec![r(3, &[]), ap(3, 7)], WriteOutcome::Unknown, 63, 0),
        txn(
            vec![r(1, &[1, 2, 4]), r(2, &[3, 5]), ap(3, 8)],
            WriteOutcome::Ok,
            90,
            95,
        ),
    ];
    let report = check_list_append(&txns);
    assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
    assert_eq!(
        report.checked, 7,
        "six with appends, the failed one read-only"
    );
    assert!(report.explanation.contains("strictly serializable"));
    assert!(
        report.explanation.contains("1 read-only"),
        "{}",
        report.explanation
    );
}

#[test]
fn a_refused_transactions_reads_are_a_snapshot_so_a_fractured_one_is_caught() {
    // T0 commits to la/1 (one range) and completes before T1 commits to la/5 (another).
    // T2 reads both at one read version and its commit is refused (a conflict, say): it saw
    // T1's later append but not T0's earlier one, which no snapshot can show.
    let mut refused = txn(
        vec![r(1, &[]), r(5, &[2]), ap(1, 9)],
        WriteOutcome::Failed,
        40,
        50,
    );
    refused.code = Some("CONFLICT".into());
    let txns = vec![
        txn(vec![r(1, &[]), ap(1, 1)], WriteOutcome::Ok, 0, 10),
        txn(vec![r(5, &[]), ap(5, 2)], WriteOutcome::Ok, 20, 30),
        refused,
        txn(vec![r(1, &[1]), ap(3, 3)], WriteOutcome::Ok, 60, 70),
    ];
    violation(
        &txns,
        "G-single-realtime",
        &[
            "T2 read [] of la/1 without T0's 1",
            "T1's append to la/5 is the last element T2 read in [2] (wr)",
            "T0 completed at 10.000 ms before T1 was invoked at 20.000 ms (rt)",
        ],
    );
    // A consistent snapshot passes: both appends; or T0's alone while T1 was still running
    // (invoked at 25 ms, before T1 completed). Its own append, which never applied, orders
    // nothing.
    for (invoke, reads) in [
        (40, vec![r(1, &[1]), r(5, &[2])]),
        (25, vec![r(1, &[1]), r(5, &[])]),
    ] {
        let mut consistent = txns.clone();
        let mut ops = reads;
        ops.push(ap(1, 9));
        consistent[2].ops = ops;
        consistent[2].invoke = invoke * 1_000_000;
        let report = check_list_append(&consistent);
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
        assert_eq!(report.checked, 4);
    }
}

#[test]
fn g0_write_cycle() {
    let txns = vec![
        ok(vec![ap(1, 1), ap(2, 2)]),
        ok(vec![ap(1, 3), ap(2, 4)]),
        ok(vec![r(1, &[1, 3]), r(2, &[4, 2]), ap(3, 9)]),
    ];
    let text = violation(&txns, "G0", &["T0", "T1", "la/1", "la/2", "(ww)"]);
    assert!(
        text.contains("T0 appended 1 to la/1 just before T1's 3 (ww)"),
        "{text}"
    );
}

#[test]
fn g1a_aborted_read() {
    let txns = vec![
        txn(vec![r(1, &[]), ap(1, 1)], WriteOutcome::Failed, 0, 10),
        ok(vec![r(1, &[1]), ap(2, 2)]),
    ];
    let text = violation(
        &txns,
        "G1a",
        &["T1 read [1] of la/1", "appended by T0, which failed"],
    );
    assert!(text.contains("aborted read"), "{text}");
}

#[test]
fn a_commit_across_ranges_seen_in_one_range_only_is_a_fractured_read() {
    // T0 appends to la/1 and la/5, which lie in two ranges, and commits (two-phase commit, one
    // version). T1 reads both at one read version: la/1 with T0's element, la/5 without it.
    // No serial order has T1 both after T0 (wr on la/1) and before it (rw on la/5).
    let txns = vec![
        ok(vec![r(1, &[]), r(5, &[]), ap(1, 1), ap(5, 2)]),
        ok(vec![r(1, &[1]), r(5, &[]), ap(3, 3)]),
    ];
    violation(
        &txns,
        "G-single",
        &[
            "T0's append to la/1 is the last element T1 read in [1] (wr)",
            "T1 read [] of la/5 without T0's 2",
        ],
    );
    // Whole or absent, it passes.
    for (one, five) in [(vec![1], vec![2]), (vec![], vec![])] {
        let mut whole = txns.clone();
        whole[1].ops = vec![r(1, &one), r(5, &five), ap(3, 3)];
        let report = check_list_append(&whole);
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
    }
}

#[test]
fn a_cross_shard_refusal_is_not_applied_so_a_half_of_it_seen_is_an_aborted_read() {
    // T0 reaches two ranges and is refused with UNAVAILABLE (aborted: nothing applied in
    // either, docs/WIRE.md): a read showing its append to either half is a violation, never an
    // unknown outcome.
    let mut refused = txn(
        vec![r(1, &[]), ap(1, 1), ap(3, 2)],
        WriteOutcome::Failed,
        0,
        10,
    );
    refused.code = Some("UNAVAILABLE".into());
    let txns = vec![refused, ok(vec![r(3, &[2]), ap(4, 3)])];
    violation(
        &txns,
        "G1a",
        &["T1 read [2] of la/3", "appended by T0, which failed"],
    );
}

#[test]
fn an_unknown_transaction_seen_in_a_read_committed() {
    let txns = vec![
        txn(vec![r(1, &[]), ap(1, 1)], WriteOutcome::Unknown, 0, 0),
        ok(vec![r(1, &[1]), ap(2, 2)]),
    ];
    let report = check_list_append(&txns);
    assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
    assert_eq!(report.checked, 2);
}

#[test]
fn g1c_circular_information_flow() {
    let txns = vec![
        ok(vec![r(2, &[2]), ap(1, 1)]),
        ok(vec![r(1, &[1]), ap(2, 2)]),
    ];
    violation(&txns, "G1c", &["T0", "T1", "(wr)", "la/1", "la/2"]);
}

#[test]
fn g_single_read_skew() {
    let txns = vec![
        ok(vec![r(1, &[]), r(2, &[]), ap(1, 1), ap(2, 2)]),
        ok(vec![r(1, &[]), r(2, &[2]), ap(3, 3)]),
        ok(vec![r(1, &[1]), r(2, &[2]), ap(4, 4)]),
    ];
    let text = violation(
        &txns,
        "G-single",
        &["T1 read [] of la/1 without T0's 1", "(rw)", "(wr)"],
    );
    assert!(text.contains("G-single cycle of 2"), "{text}");
}

#[test]
fn g2_write_skew() {
    let txns = vec![
        ok(vec![r(1, &[]), r(2, &[]), ap(1, 1)]),
        ok(vec![r(1, &[]), r(2, &[]), ap(2, 2)]),
        ok(vec![r(1, &[1]), r(2, &[2]), ap(3, 3)]),
    ];
    let text = violation(
        &txns,
        "G2",
        &[
            "T0 read [] of la/2 without T1's 2",
            "T1 read [] of la/1 without T0's 1",
        ],
    );
    assert!(text.contains("G2 cycle of 2"), "{text}");
}

#[test]
fn g2_lost_update_of_an_element_no_read_shows() {
    let txns = vec![
        ok(vec![r(1, &[5]), ap(1, 1)]),
        ok(vec![r(1, &[5]), ap(1, 2)]),
        ok(vec![r(1, &[5, 2]), ap(2, 3)]),
        ok(vec![r(2, &[]), ap(1, 5)]),
    ];
    let text = violation(
        &txns,
        "G2",
        &["T1 read [5] of la/1 without T0's 1, which no read shows"],
    );
    assert!(text.contains("G2 cycle of 2"), "{text}");
}

#[test]
fn strict_serializability_only_a_stale_read_after_a_completed_commit() {
    let txns = vec![
        txn(vec![r(1, &[]), ap(1, 1)], WriteOutcome::Ok, 0, 10),
        txn(vec![r(1, &[]), ap(2, 2)], WriteOutcome::Ok, 20, 30),
        txn(
            vec![r(1, &[1]), r(2, &[2]), ap(3, 3)],
            WriteOutcome::Ok,
            40,
            50,
        ),
    ];
    let text = violation(
        &txns,
        "G-single-realtime",
        &[
            "T0 completed at 10.000 ms before T1 was invoked at 20.000 ms (rt)",
            "T1 read [] of la/1 without T0's 1",
        ],
    );
    // The same history without the real-time order is serializable (T1 before T0).
    let concurrent: Vec<_> = txns
        .into_iter()
        .map(|mut t| {
            t.invoke = 0;
            t.complete = Some(100_000_000);
            t
        })
        .collect();
    let report = check_list_append(&concurrent);
    assert_eq!(
        report.verdict,
        Verdict::Ok,
        "{}\n{text}",
        report.explanation
    );
}

#[test]
fn incompatible_orders() {
    let txns = vec![
        ok(vec![ap(1, 1)]),
        ok(vec![ap(1, 2)]),
        ok(vec![r(1, &[1, 2]), ap(2, 3)]),
        ok(vec![r(1, &[2, 1]), ap(2, 4)]),
    ];
    violation(
        &txns,
        "incompatible-order",
        &[
            "T2 read [1 2] of la/1",
            "T3 read [2 1]",
            "neither is a prefix",
        ],
    );
}

#[test]
fn duplicates_and_garbage() {
    let txns = vec![
        ok(vec![r(1, &[]), ap(1, 1)]),
        ok(vec![r(1, &[1, 1]), ap(2, 2)]),
        ok(vec![r(2, &[2, 99]), r(3, &[1]), ap(2, 3)]),
    ];
    let text = violation(
        &txns,
        "duplicate-elements",
        &["T1 read [1 1] of la/1 with 1 more than once"],
    );
    assert!(
        text.contains("T2 read [2 99] of la/2 with 99, which no transaction appended"),
        "{text}"
    );
    assert!(
        text.contains("T2 read [1] of la/3 with 1, which T0 appended to la/1"),
        "{text}"
    );
}

#[test]
fn nothing_committed_or_a_reused_element_is_unknown() {
    let report = check_list_append(&[txn(vec![ap(1, 1)], WriteOutcome::Failed, 0, 1)]);
    assert_eq!(report.verdict, Verdict::Unknown);
    let report = check_list_append(&[ok(vec![ap(1, 1)]), ok(vec![ap(2, 1)])]);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(
        report.explanation.contains("element 1 appended twice"),
        "{}",
        report.explanation
    );
}

#[test]
fn real_time_edges_stay_sparse() {
    // 200 sequential transactions: one real-time edge each to the next.
    let txns: Vec<_> = (0..200u64)
        .map(|i| {
            txn(
                vec![r(1, &(1..=i).collect::<Vec<_>>()), ap(1, i + 1)],
                WriteOutcome::Ok,
                10 * i,
                10 * i + 5,
            )
        })
        .collect();
    let report = check_list_append(&txns);
    assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
    assert!(
        report.explanation.contains("199 rt)"),
        "{}",
        report.explanation
    );
}
