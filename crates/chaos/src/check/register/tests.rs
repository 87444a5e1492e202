//! The register checker against hand-written histories (one per rule of the module docs),
//! generated ones (correct, then with a stale read planted), a big one for speed, and a brute
//! force search over small ones.

use std::time::{Duration, Instant};

use super::*;
use crate::history::{RegisterCall, RegisterOutcome};

const MS: u64 = 1_000_000;

fn op(
    process: u64,
    key: u64,
    call: RegisterCall,
    invoke_ms: u64,
    complete_ms: Option<u64>,
    outcome: RegisterOutcome,
) -> RegisterOp {
    RegisterOp {
        process,
        node: (process % 3) as usize,
        key,
        call,
        invoke: invoke_ms * MS,
        complete: complete_ms.map(|c| c * MS),
        outcome,
    }
}

fn read(p: u64, t0: u64, t1: u64, v: Option<u64>) -> RegisterOp {
    op(
        p,
        0,
        RegisterCall::Read,
        t0,
        Some(t1),
        RegisterOutcome::Read(v),
    )
}

fn write(p: u64, t0: u64, t1: u64, v: u64) -> RegisterOp {
    op(
        p,
        0,
        RegisterCall::Write(v),
        t0,
        Some(t1),
        RegisterOutcome::Ok,
    )
}

fn write_unknown(p: u64, t0: u64, v: u64) -> RegisterOp {
    op(
        p,
        0,
        RegisterCall::Write(v),
        t0,
        None,
        RegisterOutcome::Unknown,
    )
}

fn cas(p: u64, t0: u64, t1: u64, expect: u64, new: u64, outcome: RegisterOutcome) -> RegisterOp {
    op(
        p,
        0,
        RegisterCall::Cas { expect, new },
        t0,
        Some(t1),
        outcome,
    )
}

fn on_key(key: u64, mut ops: Vec<RegisterOp>) -> Vec<RegisterOp> {
    for op in &mut ops {
        op.key = key;
    }
    ops
}

fn check(ops: &[RegisterOp]) -> Report {
    check_registers(ops, &Limits::default())
}

#[track_caller]
fn assert_ok(ops: &[RegisterOp]) {
    let report = check(ops);
    assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
    assert_eq!(report.checked, ops.len() as u64);
}

#[track_caller]
fn assert_violation(ops: &[RegisterOp]) -> String {
    let report = check(ops);
    assert_eq!(report.verdict, Verdict::Violation, "{}", report.explanation);
    report.explanation
}

#[test]
fn empty_history_is_linearizable() {
    assert_ok(&[]);
}

#[test]
fn sequential_history_passes() {
    assert_ok(&[
        read(1, 0, 1, None),
        write(1, 2, 3, 1),
        read(2, 4, 5, Some(1)),
        write(3, 6, 7, 2),
        read(1, 8, 9, Some(2)),
        read(2, 10, 11, Some(2)),
    ]);
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    let base = || vec![write(1, 0, 1, 1), write(2, 2, 10, 2)];
    for seen in [1, 2] {
        let mut ops = base();
        ops.push(read(3, 3, 4, Some(seen)));
        assert_ok(&ops);
    }
    // Old then new during the write is fine...
    let mut ops = base();
    ops.extend([read(3, 3, 4, Some(1)), read(4, 5, 6, Some(2))]);
    assert_ok(&ops);
    // ...new then old is not.
    let mut ops = base();
    ops.extend([read(3, 3, 4, Some(2)), read(4, 5, 6, Some(1))]);
    let text = assert_violation(&ops);
    assert!(text.contains("#3 p4 n1 read→1 @5.000–6.000 ms"), "{text}");
}

#[test]
fn a_stale_read_after_a_completed_write_is_a_violation() {
    let ops = [write(1, 0, 1, 1), write(2, 2, 3, 2), read(3, 4, 5, Some(1))];
    let text = assert_violation(&ops);
    assert!(text.starts_with("1 of 1 keys not linearizable"), "{text}");
    assert!(text.contains("key 0: not linearizable"), "{text}");
    assert!(text.contains("register holds 2"), "{text}");
    assert!(text.contains("#2 p3 n0 read→1 @4.000–5.000 ms"), "{text}");
    assert!(
        text.contains("already overwritten: #0 p1 n1 write(1) @0.000–1.000 ms"),
        "{text}"
    );
}

#[test]
fn reading_a_value_never_written_is_a_violation() {
    let text = assert_violation(&[write(1, 0, 1, 1), read(2, 2, 3, Some(5))]);
    assert!(text.contains("No operation ever wrote 5"), "{text}");
    let text = assert_violation(&[read(2, 2, 3, Some(5))]);
    assert!(
        text.contains("#0 p2 n2 read→5 @2.000–3.000 ms needs the register"),
        "{text}"
    );
    // Found by the search rather than up front: nothing can go first.
    let text = assert_violation(&[write(1, 5, 6, 5), read(2, 2, 3, Some(5))]);
    assert!(text.contains("No operation can even go first"), "{text}");
    assert!(
        text.contains("cannot take effect before this read: #0 p1 n1 write(5)"),
        "{text}"
    );
}

#[test]
fn absent_is_only_readable_before_the_first_write() {
    assert_ok(&[write(1, 0, 5, 1), read(2, 5, 6, None)]); // touching: concurrent
    let text = assert_violation(&[write(1, 0, 5, 1), read(2, 6, 7, None)]);
    assert!(text.contains("never becomes absent again"), "{text}");
}

#[test]
fn compare_and_set_semantics() {
    // Success changes the value; a failed one is ignored.
    assert_ok(&[
        write(1, 0, 1, 1),
        cas(2, 2, 3, 1, 2, RegisterOutcome::Ok),
        cas(3, 4, 5, 1, 3, RegisterOutcome::Failed),
        read(1, 6, 7, Some(2)),
    ]);
    // A successful one needs its expected value.
    let text = assert_violation(&[
        write(1, 0, 1, 1),
        write(1, 2, 3, 2),
        cas(2, 4, 5, 1, 6, RegisterOutcome::Ok),
    ]);
    assert!(
        text.contains("it expects 1 but the register holds 2"),
        "{text}"
    );
    let text = assert_violation(&[cas(2, 2, 3, 5, 6, RegisterOutcome::Ok)]);
    assert!(
        text.contains("cas(5→6) @2.000–3.000 ms needs the register to hold 5"),
        "{text}"
    );
    assert!(text.contains("No operation ever wrote 5"), "{text}");
    // Its effect is visible, and the value before it is gone.
    assert_violation(&[
        write(1, 0, 1, 1),
        cas(2, 2, 3, 1, 2, RegisterOutcome::Ok),
        read(1, 6, 7, Some(1)),
    ]);
    // Two concurrent CAS from the same value cannot both succeed.
    assert_violation(&[
        write(1, 0, 1, 1),
        cas(2, 2, 5, 1, 2, RegisterOutcome::Ok),
        cas(3, 2, 5, 1, 3, RegisterOutcome::Ok),
    ]);
    // Chained concurrent CAS can.
    assert_ok(&[
        write(1, 0, 1, 1),
        cas(2, 2, 5, 2, 3, RegisterOutcome::Ok),
        cas(3, 2, 5, 1, 2, RegisterOutcome::Ok),
        read(1, 6, 7, Some(3)),
    ]);
}

#[test]
fn an_unknown_write_may_take_effect_late_or_never() {
    // Seen long after its invocation.
    assert_ok(&[
        write(1, 0, 1, 1),
        write_unknown(2, 2, 2),
        read(3, 3, 4, Some(1)),
        read(3, 50, 51, Some(2)),
    ]);
    // Never seen.
    assert_ok(&[
        write(1, 0, 1, 1),
        write_unknown(2, 2, 2),
        read(3, 50, 51, Some(1)),
    ]);
    // An unknown compare-and-set as well, and a completion time on an unknown op is ignored.
    let mut late = cas(2, 2, 3, 1, 7, RegisterOutcome::Unknown);
    late.complete = Some(3 * MS);
    assert_ok(&[
        write(1, 0, 1, 1),
        late,
        read(3, 60, 61, Some(1)),
        read(3, 70, 71, Some(7)),
    ]);
}

#[test]
fn an_unknown_write_seen_before_its_invocation_is_a_violation() {
    let text = assert_violation(&[
        write(1, 0, 1, 1),
        read(3, 2, 3, Some(2)),
        write_unknown(2, 5, 2),
    ]);
    assert!(
        text.contains("cannot take effect before this read"),
        "{text}"
    );
    assert!(
        text.contains("write(2) unknown-outcome @5.000–? ms"),
        "{text}"
    );
}

#[test]
fn an_unknown_write_cannot_come_back_after_being_overwritten() {
    assert_violation(&[
        write_unknown(2, 0, 2),
        read(3, 2, 3, Some(2)),
        write(1, 4, 5, 1),
        read(3, 6, 7, Some(2)),
    ]);
}

#[test]
fn reads_alternating_between_single_writes_are_a_violation() {
    let text = assert_violation(&[
        write(1, 0, 10, 1),
        write(2, 0, 10, 2),
        read(3, 1, 2, Some(1)),
        read(3, 3, 4, Some(2)),
        read(3, 5, 6, Some(1)),
    ]);
    assert!(text.contains("read→1 @5.000–6.000 ms"), "{text}");
}

#[test]
fn failed_and_unknown_reads_are_ignored_but_failed_writes_are_not_seen() {
    assert_ok(&[
        write(1, 0, 1, 1),
        write(2, 2, 3, 9).with_outcome(RegisterOutcome::Failed),
        op(3, 0, RegisterCall::Read, 4, None, RegisterOutcome::Unknown),
        read(1, 5, 6, Some(1)),
    ]);
    let text = assert_violation(&[
        write(1, 0, 1, 1),
        write(2, 2, 3, 9).with_outcome(RegisterOutcome::Failed),
        read(1, 5, 6, Some(9)),
    ]);
    assert!(text.contains("The only writes of 9 failed"), "{text}");
    let report = check(&[write(2, 2, 3, 9).with_outcome(RegisterOutcome::Failed)]);
    assert!(
        report.explanation.contains("1 failed"),
        "{}",
        report.explanation
    );
}

#[test]
fn keys_are_checked_separately_and_the_bad_one_is_named() {
    let good = |key| on_key(key, vec![write(1, 0, 1, key), read(2, 2, 3, Some(key))]);
    let mut ops = good(1);
    ops.extend(on_key(2, vec![write(1, 0, 1, 5), read(2, 2, 3, Some(6))]));
    ops.extend(good(3));
    // The same value on another key does not help key 2.
    ops.extend(on_key(4, vec![write(1, 0, 1, 6)]));
    let text = assert_violation(&ops);
    assert!(text.starts_with("1 of 4 keys not linearizable"), "{text}");
    assert!(text.contains("\nkey 2: "), "{text}");
    assert!(
        !text.contains("key 1:") && !text.contains("key 3:"),
        "{text}"
    );
}

#[test]
fn hitting_a_limit_is_unknown_never_ok() {
    let ops: Vec<RegisterOp> = (0..20).map(|i| write(i, i, i + 1, i)).collect();
    let limits = Limits {
        max_states_per_key: 5,
        deadline: None,
    };
    let report = check_registers(&ops, &limits);
    assert_eq!(report.verdict, Verdict::Unknown, "{}", report.explanation);
    assert!(
        report.explanation.contains("gave up after 6 states"),
        "{}",
        report.explanation
    );
    assert!(!report.passed());

    let past = Instant::now().checked_sub(Duration::from_millis(1));
    let limits = Limits {
        max_states_per_key: u64::MAX,
        deadline: past,
    };
    let report = check_registers(&ops, &limits);
    assert_eq!(report.verdict, Verdict::Unknown, "{}", report.explanation);
    assert!(
        report.explanation.contains("deadline"),
        "{}",
        report.explanation
    );
}

#[test]
fn a_deadline_stops_a_long_search() {
    // 24 concurrent writes read back one by one, then the first value again: proving that
    // no order works means trying ~2^24 subsets.
    let mut ops: Vec<RegisterOp> = (0..24).map(|i| write(i, 0, 100, i)).collect();
    ops.extend((0..24).map(|i| read(30, 1 + 2 * i, 2 + 2 * i, Some(i))));
    ops.push(read(30, 60, 61, Some(0)));
    let limits = Limits {
        max_states_per_key: 3_000_000,
        deadline: Instant::now().checked_add(Duration::from_millis(20)),
    };
    let report = check_registers(&ops, &limits);
    assert_eq!(report.verdict, Verdict::Unknown, "{}", report.explanation);
    assert!(
        report.explanation.contains("passed the deadline"),
        "{}",
        report.explanation
    );
}

#[test]
fn a_violation_wins_over_an_undecided_key() {
    let mut ops = on_key(1, vec![write(1, 0, 1, 1), read(2, 2, 3, Some(2))]);
    ops.push(op(
        1,
        2,
        RegisterCall::Read,
        0,
        Some(1),
        RegisterOutcome::Ok,
    ));
    let report = check(&ops);
    assert_eq!(report.verdict, Verdict::Violation, "{}", report.explanation);
    assert!(
        report.explanation.contains("(1 more undecided)"),
        "{}",
        report.explanation
    );
}

#[test]
fn malformed_ops_make_the_key_unknown() {
    let bad_read = op(4, 0, RegisterCall::Read, 2, Some(3), RegisterOutcome::Ok);
    let report = check(&[write(1, 0, 1, 1), bad_read]);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(
        report.explanation.contains("malformed op #1 (p4 n1)"),
        "{}",
        report.explanation
    );

    let bad_write = write(1, 0, 1, 1).with_outcome(RegisterOutcome::Read(Some(1)));
    assert_eq!(check(&[bad_write]).verdict, Verdict::Unknown);

    let mut backwards = write(1, 5, 1, 1);
    assert_eq!(check(&[backwards.clone()]).verdict, Verdict::Unknown);
    backwards.complete = None;
    let report = check(&[backwards]);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(
        report.explanation.contains("without a completion time"),
        "{}",
        report.explanation
    );
}

#[test]
fn explanations_stay_bounded() {
    // 40 concurrent writes, then a read of a value none wrote: found without a search.
    let mut ops: Vec<RegisterOp> = (0..40).map(|i| write(i, 0, 10, i)).collect();
    ops.push(read(99, 11, 12, Some(1_000)));
    let text = assert_violation(&ops);
    assert!(
        text.contains("#40 p99 n0 read→1000 @11.000–12.000 ms needs"),
        "{text}"
    );
    assert!(text.contains("No operation ever wrote 1000"), "{text}");
    // 12 concurrent writes and reads flipping back: the search must try every order.
    let mut ops: Vec<RegisterOp> = (0..12).map(|i| write(i, 0, 10, i)).collect();
    ops.extend([
        read(20, 1, 2, Some(1)),
        read(20, 3, 4, Some(2)),
        read(20, 5, 6, Some(1)),
    ]);
    let text = assert_violation(&ops);
    assert!(text.contains("#14 p20 n2 read→1 @5.000–6.000 ms"), "{text}");
    assert!(text.contains("14 ops, ending with:"), "{text}");
    let tail = "#13 p20 n2 read→2 @3.000–4.000 ms\nafter which the register holds 2.";
    assert!(text.contains(tail), "{text}");
    assert!(
        text.contains("already overwritten: #1 p1 n1 write(1)"),
        "{text}"
    );
    assert!(text.lines().count() < 30, "{text}");
}

impl RegisterOp {
    fn with_outcome(mut self, outcome: RegisterOutcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// splitmix64: deterministic, dependency-free randomness for generated histories.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A history of `count` ops by `clients` clients against one real (linearizable) register:
/// each op takes effect at a random instant inside its interval; about one op in
/// `unknown_every` has an unknown outcome (and takes effect late or never).
fn generate(seed: u64, clients: u64, count: usize, unknown_every: u64) -> Vec<RegisterOp> {
    let mut rng = Rng(seed);
    let mut free_at = vec![0u64; clients as usize];
    let mut process: Vec<u64> = (0..clients).collect();
    let mut next_process = clients;
    let mut next_value = 1u64;
    // (op, linearization point or None for never)
    let mut planned: Vec<(RegisterOp, Option<u64>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let c = (0..clients as usize)
            .min_by_key(|&c| (free_at[c], c))
            .unwrap_or(0);
        let invoke = free_at[c] + rng.below(200_000);
        let duration = 50_000 + rng.below(3 * MS);
        let call = match rng.below(10) {
            0..=3 => RegisterCall::Read,
            4..=7 => {
                next_value += 1;
                RegisterCall::Write(next_value)
            }
            _ => {
                next_value += 1;
                RegisterCall::Cas {
                    expect: (next_value - 1).saturating_sub(rng.below(3)),
                    new: next_value,
                }
            }
        };
        let unknown = rng.below(unknown_every) == 0;
        let at = if !unknown {
            Some(invoke + rng.below(duration + 1))
        } else if rng.below(2) == 0 {
            Some(invoke + rng.below(20 * MS))
        } else {
            None
        };
        planned.push((
            RegisterOp {
                process: process[c],
                node: c % 3,
                key: 0,
                call,
                invoke,
                complete: (!unknown).then_some(invoke + duration),
                outcome: RegisterOutcome::Unknown,
            },
            at,
        ));
        free_at[c] = invoke + duration;
        if unknown {
            process[c] = next_process;
            next_process += 1;
        }
    }
    let mut order: Vec<usize> = (0..planned.len())
        .filter(|&i| planned[i].1.is_some())
        .collect();
    order.sort_by_key(|&i| planned[i].1);
    let mut register: Option<u64> = None;
    for i in order {
        let op = &mut planned[i].0;
        let unknown = op.complete.is_none();
        let outcome = match op.call {
            RegisterCall::Read => RegisterOutcome::Read(register),
            RegisterCall::Write(v) => {
                register = Some(v);
                RegisterOutcome::Ok
            }
            RegisterCall::Cas { expect, new } => {
                if register == Some(expect) {
                    register = Some(new);
                    RegisterOutcome::Ok
                } else {
                    RegisterOutcome::Failed
                }
            }
        };
        if !unknown {
            op.outcome = outcome;
        }
    }
    planned.into_iter().map(|(op, _)| op).collect()
}

/// Makes one late read return a value that two completed writes definitely overwrote.
fn make_stale(ops: &mut [RegisterOp]) -> usize {
    let written = |op: &RegisterOp| match (op.call, op.outcome) {
        (RegisterCall::Write(v) | RegisterCall::Cas { new: v, .. }, RegisterOutcome::Ok) => Some(v),
        _ => None,
    };
    for r in (ops.len() / 2..ops.len()).rev() {
        let RegisterOutcome::Read(Some(seen)) = ops[r].outcome else {
            continue;
        };
        let before = |op: &RegisterOp, t: u64| op.complete.is_some_and(|c| c < t);
        for b in 0..ops.len() {
            if written(&ops[b]).is_none() || !before(&ops[b], ops[r].invoke) {
                continue;
            }
            let a = (0..ops.len()).find(|&a| {
                written(&ops[a]).is_some_and(|v| v != seen) && before(&ops[a], ops[b].invoke)
            });
            if let Some(a) = a {
                ops[r].outcome = RegisterOutcome::Read(written(&ops[a]));
                return r;
            }
        }
    }
    panic!("no read to make stale");
}

#[test]
fn generated_histories_pass_and_a_stale_read_fails() {
    for seed in 1..=20 {
        let mut ops = generate(seed, 5, 200, 40);
        let report = check(&ops);
        assert_eq!(
            report.verdict,
            Verdict::Ok,
            "seed {seed}: {}",
            report.explanation
        );
        let r = make_stale(&mut ops);
        let text = assert_violation(&ops);
        assert!(text.contains(&format!("#{r} ")), "seed {seed}: {text}");
    }
}

#[test]
fn a_big_correct_history_checks_quickly_and_a_stale_read_in_it_is_found() {
    for clients in [10, 20] {
        let mut ops = generate(7, clients, 2_000, 300);
        let unknown = ops
            .iter()
            .filter(|op| op.outcome == RegisterOutcome::Unknown)
            .count();
        assert!((2..20).contains(&unknown), "{unknown} unknown ops");
        let indices: Vec<usize> = (0..ops.len()).collect();
        let started = Instant::now();
        let outcome = check_key(&ops, &indices, &Limits::default());
        let elapsed = started.elapsed();
        assert_eq!(outcome.verdict, Verdict::Ok, "{}", outcome.explanation);
        eprintln!(
            "2000 ops, {clients} clients, {unknown} unknown: {} states in {elapsed:?}",
            outcome.states
        );
        // A deterministic stand-in for a time bound: few states per op.
        assert!(
            outcome.states < 20 * ops.len() as u64,
            "{} states",
            outcome.states
        );

        let r = make_stale(&mut ops);
        let started = Instant::now();
        let outcome = check_key(&ops, &indices, &Limits::default());
        let elapsed = started.elapsed();
        eprintln!(
            "  stale read #{r}: {} states in {elapsed:?}",
            outcome.states
        );
        assert_eq!(
            outcome.verdict,
            Verdict::Violation,
            "{}",
            outcome.explanation
        );
        assert!(
            outcome.explanation.contains(&format!("#{r} ")),
            "{}",
            outcome.explanation
        );
        assert!(
            outcome.states < 100 * ops.len() as u64,
            "{} states",
            outcome.states
        );
        assert!(outcome.explanation.len() < 4_000, "{}", outcome.explanation);
    }
}

/// Whether `ops` (one key) is linearizable, by trying every order: no memo, no pruning.
fn brute_force(ops: &[RegisterOp]) -> bool {
    struct B {
        call: RegisterCall,
        invoke: u64,
        complete: Option<u64>, // None: pending
        read: Option<Option<u64>>,
    }
    let ops: Vec<B> = ops
        .iter()
        .filter_map(|op| match (op.call, op.outcome) {
            (_, RegisterOutcome::Failed) => None,
            (RegisterCall::Read, RegisterOutcome::Unknown) => None,
            (call, RegisterOutcome::Unknown) => Some(B {
                call,
                invoke: op.invoke,
                complete: None,
                read: None,
            }),
            (call, RegisterOutcome::Read(v)) => Some(B {
                call,
                invoke: op.invoke,
                complete: op.complete,
                read: Some(v),
            }),
            (call, RegisterOutcome::Ok) => Some(B {
                call,
                invoke: op.invoke,
                complete: op.complete,
                read: None,
            }),
        })
        .collect();
    fn go(ops: &[B], done: &mut Vec<bool>, state: Option<u64>) -> bool {
        let left = |i: usize, done: &[bool]| !done[i] && ops[i].complete.is_some();
        if !(0..ops.len()).any(|i| left(i, done)) {
            return true;
        }
        for x in 0..ops.len() {
            if done[x]
                || (0..ops.len())
                    .any(|y| left(y, done) && ops[y].complete.is_some_and(|c| c < ops[x].invoke))
            {
                continue;
            }
            let next = match (ops[x].call, ops[x].read) {
                (RegisterCall::Read, Some(v)) if v == state => state,
                (RegisterCall::Read, _) => continue,
                (RegisterCall::Write(v), _) => Some(v),
                (RegisterCall::Cas { expect, new }, _) if state == Some(expect) => Some(new),
                (RegisterCall::Cas { .. }, _) => continue,
            };
            done[x] = true;
            let ok = go(ops, done, next);
            done[x] = false;
            if ok {
                return true;
            }
        }
        false
    }
    go(&ops, &mut vec![false; ops.len()], None)
}

#[test]
fn agrees_with_a_brute_force_search_on_small_random_histories() {
    let mut rng = Rng(99);
    let (mut good, mut bad) = (0, 0);
    for _ in 0..3_000 {
        let n = 1 + rng.below(7) as usize;
        // Few distinct values: most are observed; more: many writes nothing observes.
        let values = 3 + rng.below(4);
        let ops: Vec<RegisterOp> = (0..n)
            .map(|i| {
                let invoke = rng.below(10);
                let complete = invoke + rng.below(5);
                let value = 1 + rng.below(values);
                let (call, outcome) = match rng.below(8) {
                    0..=2 => {
                        let v = rng.below(values + 1);
                        let seen = (v > 0).then_some(v);
                        let outcome = if rng.below(10) == 0 {
                            RegisterOutcome::Unknown
                        } else {
                            RegisterOutcome::Read(seen)
                        };
                        (RegisterCall::Read, outcome)
                    }
                    3..=5 => (RegisterCall::Write(value), RegisterOutcome::Ok),
                    _ => (
                        RegisterCall::Cas {
                            expect: 1 + rng.below(values),
                            new: value,
                        },
                        RegisterOutcome::Ok,
                    ),
                };
                let outcome = match (outcome, rng.below(6)) {
                    (RegisterOutcome::Ok, 0 | 2) => RegisterOutcome::Unknown,
                    (RegisterOutcome::Ok, 1) => RegisterOutcome::Failed,
                    (outcome, _) => outcome,
                };
                let complete =
                    (outcome != RegisterOutcome::Unknown || rng.below(2) == 0).then_some(complete);
                op(i as u64, 0, call, invoke, complete, outcome)
            })
            .collect();
        let expected = brute_force(&ops);
        let report = check(&ops);
        let want = if expected {
            Verdict::Ok
        } else {
            Verdict::Violation
        };
        assert_eq!(report.verdict, want, "{ops:#?}\n{}", report.explanation);
        if expected {
            good += 1;
        } else {
            bad += 1;
        }
    }
    assert!(good > 500 && bad > 500, "{good} good, {bad} bad");
}
