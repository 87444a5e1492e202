//! `dolmen-chaos`: Jepsen-style evidence that Dolmen never loses an acknowledged write, never
//! returns a non-linearizable result, and commits transactions strictly serializably. See
//! `docs/RELIABILITY.md`.
//!
//! ```text
//!  main (CLI) ─▶ run ─┬─ cluster   real `dolmen serve` processes on loopback (signals, admin API)
//!                     ├─ workload  client tasks: register / bank / set / list-append
//!                     │              ─▶ recorder (history.jsonl)
//!                     ├─ nemesis   seeded faults (kill, pause, partition, drop, delay, ...)
//!                     ├─ shards    --split-keys: the key ranges, figures by range
//!                     ├─ check     checkers over the recorded history (+ replica agreement)
//!                     └─ report    run.json, summary.json, explanation.txt, the printed summary
//! ```

pub mod check;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod options;
pub mod recorder;
pub mod report;
pub mod rng;
pub mod run;
pub mod shards;
pub mod workload;
