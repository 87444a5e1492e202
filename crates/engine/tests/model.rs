//! Property test: the engine agrees with a tiny in-memory reference model
//! (`BTreeMap<(cf, key), Vec<(version, Option<value>)>>`) under random interleavings of
//! commits (sets, deletes, clear-ranges, versionstamps, read conflicts, idempotency tokens),
//! compactions, idempotency expiry, garbage collection, reopening, reads (point and range) at
//! random versions, and batches mixing them.

use std::collections::BTreeMap;

use dolmen_engine::range::{walk, RangeSpec};
use dolmen_engine::{
    stamp_buffer, versionstamp, Command, Durability, Engine, EngineOptions, IdempotencyToken,
    KeyRange, Mutation, Outcome, ReadError, Transaction, Version,
};
use proptest::prelude::*;

const CFS: [&str; 2] = ["default", "users"];

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"a".to_vec()),
        Just(b"a\x00".to_vec()),
        Just(b"ab".to_vec()),
        Just(b"b".to_vec()),
        Just(b"b\xFF".to_vec()),
        Just(b"c".to_vec()),
        prop::collection::vec(any::<u8>(), 1..4),
    ]
}

fn cf_strategy() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("default".to_string()), 1 => Just("users".to_string())]
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (cf_strategy(), key_strategy(), prop::collection::vec(any::<u8>(), 0..4))
            .prop_map(|(cf, key, value)| Mutation::Set { cf, key, value }),
        2 => (cf_strategy(), key_strategy()).prop_map(|(cf, key)| Mutation::Delete { cf, key }),
        1 => (cf_strategy(), key_strategy(), key_strategy())
            .prop_map(|(cf, begin, end)| Mutation::ClearRange { cf, begin, end }),
        1 => (cf_strategy(), prop::collection::vec(any::<u8>(), 10..12))
            .prop_map(|(cf, key)| Mutation::SetVersionstampedKey { cf, key, value: b"vk".to_vec() }),
        1 => (cf_strategy(), key_strategy())
            .prop_map(|(cf, key)| Mutation::SetVersionstampedValue { cf, key, value: vec![7; 10] }),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    /// A commit; `read_back` picks the read version as "applied minus n" (saturating).
    Commit {
        read_back: Option<u64>,
        mutations: Vec<Mutation>,
        conflicts: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
        token: Option<TokenPick>,
    },
    Compact {
        back: u64,
    },
    /// `ExpireIdempotency { before: applied + 1 - back, limit }`.
    Expire {
        back: u64,
        limit: u32,
    },
    /// Token commits, compactions and expiries applied as one batch.
    Mixed(Vec<MixedCmd>),
    Gc,
    Reopen,
    Get {
        cf: String,
        key: Vec<u8>,
        back: u64,
    },
    Range {
        cf: String,
        spec: RangeSpec,
        back: u64,
    },
    /// Several commands applied as one batch (group commit).
    Batch(Vec<Vec<Mutation>>),
    /// A batch that fails after `after` spilled `ClearRange` chunks (as a crash there would
    /// stop it), then a reopen or not: either way the next batch starts from the state before
    /// it. A batch that spills fewer chunks applies normally.
    FailingBatch {
        txs: Vec<Vec<Mutation>>,
        after: u64,
        reopen: bool,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let range_spec = (
        key_strategy(),
        prop_oneof![key_strategy(), Just(vec![0xFF]), Just(vec![])],
        any::<bool>(),
        any::<bool>(),
        0usize..3,
        -2i64..3,
        prop_oneof![Just(None), (0usize..4).prop_map(Some)],
        // A byte budget of a few small pairs, or none.
        prop_oneof![Just(None), (1usize..12).prop_map(Some)],
    )
        .prop_map(
            |(
                begin_key,
                end_key,
                begin_or_equal,
                end_or_equal,
                begin_offset,
                end_offset,
                limit,
                max_bytes,
            )| {
                RangeSpec {
                    begin_key,
                    end_key,
                    begin_or_equal,
                    end_or_equal,
                    begin_offset,
                    end_offset,
                    limit,
                    max_bytes,
                }
            },
        );
    prop_oneof![
        6 => (
            prop::option::of(0u64..6),
            prop::collection::vec(mutation_strategy(), 0..4),
            prop::collection::vec((cf_strategy(), key_strategy(), prop::option::of(key_strategy())), 0..3),
            prop::option::of(token_strategy()),
        )
            .prop_map(|(read_back, mutations, conflicts, token)| Op::Commit { read_back, mutations, conflicts, token }),
        1 => (0u64..8).prop_map(|back| Op::Compact { back }),
        1 => (0u64..8, 1u32..4).prop_map(|(back, limit)| Op::Expire { back, limit }),
        1 => prop::collection::vec(mixed_strategy(), 1..8).prop_map(Op::Mixed),
        1 => Just(Op::Gc),
        1 => Just(Op::Reopen),
        3 => (cf_strategy(), key_strategy(), 0u64..10).prop_map(|(cf, key, back)| Op::Get { cf, key, back }),
        3 => (cf_strategy(), range_spec, 0u64..10).prop_map(|(cf, spec, back)| Op::Range { cf, spec, back }),
        1 => prop::collection::vec(prop::collection::vec(mutation_strategy(), 1..3), 1..4).prop_map(Op::Batch),
        1 => (
            prop::collection::vec(prop::collection::vec(mutation_strategy(), 1..4), 1..4),
            1u64..3,
            any::<bool>(),
        )
            .prop_map(|(txs, after, reopen)| Op::FailingBatch { txs, after, reopen }),
    ]
}

/// Which idempotency token a commit carries: one of four clients, and which sequence.
#[derive(Clone, Copy, Debug)]
struct TokenPick {
    client: u8,
    /// 0: the client's last sequence again (a retry), 1 and 2: the next one, 3: an older one.
    sequence: u8,
}

#[derive(Clone, Debug)]
enum MixedCmd {
    Write(TokenPick, Vec<Mutation>),
    Compact { back: u64 },
    Expire { back: u64, limit: u32 },
}

fn token_strategy() -> impl Strategy<Value = TokenPick> {
    (0u8..4, 0u8..4).prop_map(|(client, sequence)| TokenPick { client, sequence })
}

fn mixed_strategy() -> impl Strategy<Value = MixedCmd> {
    prop_oneof![
        4 => (token_strategy(), prop::collection::vec(mutation_strategy(), 1..3))
            .prop_map(|(t, m)| MixedCmd::Write(t, m)),
        1 => (0u64..6).prop_map(|back| MixedCmd::Compact { back }),
        2 => (0u64..8, 1u32..4).prop_map(|(back, limit)| MixedCmd::Expire { back, limit }),
    ]
}

/// The sequences each client issued so far (the test's clients, not the model).
#[derive(Default)]
struct Clients(BTreeMap<u8, u64>);

impl Clients {
    fn token(&mut self, pick: TokenPick) -> IdempotencyToken {
        let last = self.0.entry(pick.client).or_insert(0);
        let sequence = match pick.sequence {
            0 => (*last).max(1),
            3 => last.saturating_sub(1).max(1),
            _ => *last + 1,
        };
        *last = (*last).max(sequence);
        IdempotencyToken {
            client_id: vec![b'c', pick.client],
            sequence,
        }
    }
}

/// Every version of one key, oldest first (`None` = deleted).
type History = Vec<(Version, Option<Vec<u8>>)>;

/// The reference model.
#[derive(Default)]
struct Model {
    data: BTreeMap<(String, Vec<u8>), History>,
    applied: Version,
    horizon: Version,
    /// The idempotency table: client id -> (sequence, version recorded at, outcome).
    dedupe: BTreeMap<Vec<u8>, (u64, Version, Outcome)>,
}

impl Model {
    fn at(&self, cf: &str, key: &[u8], v: Version) -> Option<Vec<u8>> {
        self.data
            .get(&(cf.to_string(), key.to_vec()))
            .and_then(|versions| versions.iter().rev().find(|(w, _)| *w <= v))
            .and_then(|(_, value)| value.clone())
    }

    fn visible(&self, cf: &str, v: Version) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.data
            .keys()
            .filter(|(c, _)| c == cf)
            .filter_map(|(c, k)| self.at(c, k, v).map(|val| (k.clone(), val)))
            .collect()
    }

    fn apply(&mut self, version: Version, command: &Command) -> Outcome {
        self.applied = version;
        let tx = match command {
            Command::Compact { horizon } => {
                self.horizon = self.horizon.max((*horizon).min(version));
                return Outcome::Applied;
            }
            Command::Noop | Command::OracleBound { .. } => return Outcome::Applied,
            // Commits across groups have their own test (crates/engine/tests/cross_group.rs).
            Command::Prepare(_)
            | Command::Resolve { .. }
            | Command::Decide(_)
            | Command::Forget { .. } => {
                unreachable!("the model generates no commands across groups")
            }
            Command::ExpireIdempotency { before, limit } => {
                let bound = (*before).min(self.horizon);
                let mut old: Vec<(Version, Vec<u8>)> = self
                    .dedupe
                    .iter()
                    .filter(|(_, (_, at, _))| *at < bound)
                    .map(|(client, (_, at, _))| (*at, client.clone()))
                    .collect();
                old.sort();
                for (_, client) in old.into_iter().take(*limit as usize) {
                    self.dedupe.remove(&client);
                }
                return Outcome::Applied;
            }
            Command::Commit(tx) => tx,
        };
        if let Err(e) = tx.validate() {
            return Outcome::Rejected(e);
        }
        if let Some(token) = &tx.idempotency {
            if let Some((latest, _, outcome)) = self.dedupe.get(&token.client_id) {
                if *latest == token.sequence {
                    return outcome.clone();
                }
                if *latest > token.sequence {
                    return Outcome::Rejected(dolmen_engine::Invalid::StaleSequence {
                        sequence: token.sequence,
                        latest: *latest,
                    });
                }
            }
        }
        let outcome = self.transact(version, tx);
        if let Some(token) = &tx.idempotency {
            if matches!(
                outcome,
                Outcome::Committed { .. } | Outcome::Conflict { .. } | Outcome::TooOld { .. }
            ) {
                self.dedupe.insert(
                    token.client_id.clone(),
                    (token.sequence, version, outcome.clone()),
                );
            }
        }
        outcome
    }

    /// A transaction's conflict check and writes (no idempotency).
    fn transact(&mut self, version: Version, tx: &Transaction) -> Outcome {
        if let Some(r) = tx.read_version {
            if r >= version {
                return Outcome::Rejected(dolmen_engine::Invalid::FutureReadVersion {
                    read_version: r,
                    version,
                });
            }
            if !tx.read_conflicts.is_empty() && r < self.horizon {
                return Outcome::TooOld {
                    read_version: r,
                    horizon: self.horizon,
                };
            }
            for range in &tx.read_conflicts {
                let hit = self.data.iter().find(|((c, k), versions)| {
                    *c == range.cf
                        && *k >= range.begin
                        && *k < range.end
                        && versions.iter().any(|(w, _)| *w > r && *w < version)
                });
                if let Some(((cf, key), _)) = hit {
                    return Outcome::Conflict {
                        cf: cf.clone(),
                        key: key.clone(),
                    };
                }
            }
        }
        for (i, m) in tx.mutations.iter().enumerate() {
            let stamp = versionstamp(version, i as u16);
            let mut write = |cf: &str, key: Vec<u8>, value: Option<Vec<u8>>| {
                let versions = self.data.entry((cf.to_string(), key)).or_default();
                if versions.last().is_some_and(|(w, _)| *w == version) {
                    versions.pop();
                }
                versions.push((version, value));
            };
            match m {
                Mutation::Set { cf, key, value } => write(cf, key.clone(), Some(value.clone())),
                Mutation::Delete { cf, key } => write(cf, key.clone(), None),
                Mutation::SetVersionstampedKey { cf, key, value } => {
                    write(cf, stamp_buffer(key, &stamp), Some(value.clone()))
                }
                Mutation::SetVersionstampedValue { cf, key, value } => {
                    write(cf, key.clone(), Some(stamp_buffer(value, &stamp)))
                }
                Mutation::ClearRange { cf, begin, end } => {
                    let live: Vec<Vec<u8>> = self
                        .visible(cf, version)
                        .into_iter()
                        .map(|(k, _)| k)
                        .filter(|k| k >= begin && k < end)
                        .collect();
                    for k in live {
                        let versions = self.data.entry((cf.clone(), k)).or_default();
                        if versions.last().is_some_and(|(w, _)| *w == version) {
                            versions.pop();
                        }
                        versions.push((version, None));
                    }
                }
            }
        }
        Outcome::Committed { version }
    }

    fn read_check(&self, v: Version) -> Result<(), &'static str> {
        if v < self.horizon {
            Err("too old")
        } else if v > self.applied {
            Err("future")
        } else {
            Ok(())
        }
    }
}

/// Outcomes agree; which conflicting key is reported may differ, the kind may not.
fn same_outcome(got: &Outcome, expected: &Outcome) -> Result<(), TestCaseError> {
    match (got, expected) {
        (Outcome::Conflict { .. }, Outcome::Conflict { .. }) => Ok(()),
        (g, e) => {
            prop_assert_eq!(g, e);
            Ok(())
        }
    }
}

/// The engine's idempotency table agrees with the model's: size and oldest entry.
fn same_table(engine: &Engine, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(engine.idempotency_entries(), model.dedupe.len() as u64);
    prop_assert_eq!(
        engine.oldest_idempotency_version().unwrap(),
        model.dedupe.values().map(|(_, at, _)| *at).min()
    );
    Ok(())
}

fn classify<T>(r: &Result<T, ReadError>) -> Result<(), &'static str> {
    match r {
        Ok(_) => Ok(()),
        Err(ReadError::TooOld { .. }) => Err("too old"),
        Err(ReadError::FutureVersion { .. }) => Err("future"),
        Err(e) => panic!("unexpected read error {e}"),
    }
}

/// Chunks of 2 live keys: most `ClearRange`s of a few keys spill one or more chunks ahead of
/// their batch, and some leave a last partial chunk (docs/engine-format.md, Clearing a range).
const CLEAR_CHUNK_KEYS: usize = 2;

fn open(dir: &std::path::Path) -> Engine {
    Engine::open(&EngineOptions::new(
        dir,
        CFS.iter().map(|s| s.to_string()).collect(),
    ))
    .unwrap()
    .with_clear_range_chunk_keys(CLEAR_CHUNK_KEYS)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let mut model = Model::default();
    let mut clients = Clients::default();
    for op in ops {
        match op {
            Op::Commit {
                read_back,
                mutations,
                conflicts,
                token,
            } => {
                let read_version = read_back.map(|b| model.applied.saturating_sub(b));
                let read_conflicts = conflicts
                    .into_iter()
                    .map(|(cf, begin, end)| match end {
                        None => KeyRange::single(&cf, &begin),
                        Some(end) => KeyRange { cf, begin, end },
                    })
                    .collect();
                let cmd = Command::Commit(Transaction {
                    read_version,
                    mutations,
                    read_conflicts,
                    idempotency: token.map(|t| clients.token(t)),
                    stamp: None,
                });
                let version = model.applied + 1;
                let expected = model.apply(version, &cmd);
                let got = engine
                    .apply_batch(&[(version, cmd)], Durability::Buffered, &[])
                    .unwrap();
                same_outcome(&got[0], &expected)?;
            }
            Op::Expire { back, limit } => {
                let version = model.applied + 1;
                let cmd = Command::ExpireIdempotency {
                    before: version.saturating_sub(back),
                    limit,
                };
                model.apply(version, &cmd);
                engine
                    .apply_batch(&[(version, cmd)], Durability::Buffered, &[])
                    .unwrap();
                same_table(&engine, &model)?;
            }
            Op::Mixed(cmds) => {
                let mut entries = Vec::new();
                let mut expected = Vec::new();
                for c in cmds {
                    let version = model.applied + 1;
                    let cmd = match c {
                        MixedCmd::Write(pick, mutations) => Command::Commit(Transaction {
                            mutations,
                            idempotency: Some(clients.token(pick)),
                            ..Transaction::default()
                        }),
                        MixedCmd::Compact { back } => Command::Compact {
                            horizon: version.saturating_sub(back),
                        },
                        MixedCmd::Expire { back, limit } => Command::ExpireIdempotency {
                            before: version.saturating_sub(back),
                            limit,
                        },
                    };
                    expected.push(model.apply(version, &cmd));
                    entries.push((version, cmd));
                }
                let got = engine
                    .apply_batch(&entries, Durability::Buffered, &[])
                    .unwrap();
                prop_assert_eq!(got.len(), expected.len());
                for (g, e) in got.iter().zip(&expected) {
                    same_outcome(g, e)?;
                }
                same_table(&engine, &model)?;
            }
            Op::Batch(txs) => {
                let mut entries = Vec::new();
                let mut expected = Vec::new();
                for mutations in txs {
                    let version = model.applied + 1;
                    let cmd = Command::Commit(Transaction {
                        mutations,
                        ..Transaction::default()
                    });
                    expected.push(model.apply(version, &cmd));
                    entries.push((version, cmd));
                }
                let got = engine
                    .apply_batch(&entries, Durability::Buffered, &[])
                    .unwrap();
                prop_assert_eq!(got, expected);
            }
            Op::FailingBatch { txs, after, reopen } => {
                let entries: Vec<(Version, Command)> = txs
                    .into_iter()
                    .enumerate()
                    .map(|(i, mutations)| {
                        let cmd = Command::Commit(Transaction {
                            mutations,
                            ..Transaction::default()
                        });
                        (model.applied + 1 + i as u64, cmd)
                    })
                    .collect();
                engine.fail_clear_range_after_chunks(Some(after));
                let got = engine.apply_batch(&entries, Durability::Buffered, &[]);
                engine.fail_clear_range_after_chunks(None);
                match got {
                    Ok(got) => {
                        let expected: Vec<Outcome> = entries
                            .iter()
                            .map(|(version, cmd)| model.apply(*version, cmd))
                            .collect();
                        prop_assert_eq!(got, expected);
                    }
                    Err(dolmen_engine::StorageError::Injected { .. }) => {
                        prop_assert_eq!(engine.applied_version(), model.applied);
                        if reopen {
                            drop(engine);
                            engine = open(dir.path());
                        }
                        prop_assert_eq!(engine.applied_version(), model.applied);
                    }
                    Err(e) => panic!("unexpected apply error {e}"),
                }
            }
            Op::Compact { back } => {
                let version = model.applied + 1;
                let cmd = Command::Compact {
                    horizon: version.saturating_sub(back),
                };
                model.apply(version, &cmd);
                engine
                    .apply_batch(&[(version, cmd)], Durability::Buffered, &[])
                    .unwrap();
            }
            Op::Gc => {
                engine.collect_garbage(u64::MAX).unwrap();
            }
            Op::Reopen => {
                drop(engine);
                engine = open(dir.path());
                prop_assert_eq!(engine.applied_version(), model.applied);
                prop_assert_eq!(engine.horizon(), model.horizon);
                same_table(&engine, &model)?;
            }
            Op::Get { cf, key, back } => {
                let v = model.applied.saturating_sub(back);
                let got = engine.get(&cf, &key, v);
                prop_assert_eq!(classify(&got), model.read_check(v));
                if let Ok(value) = got {
                    prop_assert_eq!(value, model.at(&cf, &key, v), "get {:?} at {}", key, v);
                }
            }
            Op::Range { cf, spec, back } => {
                let v = model.applied.saturating_sub(back);
                let got = engine.get_range(&cf, &spec, v);
                prop_assert_eq!(classify(&got), model.read_check(v));
                if let Ok(page) = got {
                    prop_assert_eq!(
                        page,
                        walk(&spec, model.visible(&cf, v)),
                        "range {:?} at {}",
                        spec,
                        v
                    );
                }
            }
        }
    }
    // The live-key counter agrees with the model.
    let live: usize = CFS
        .iter()
        .map(|cf| model.visible(cf, model.applied).len())
        .sum();
    prop_assert_eq!(engine.stats().live_keys, live as u64);
    same_table(&engine, &model)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op_strategy(), 1..60)) {
        run(ops)?;
    }
}
