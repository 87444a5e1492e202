//! Seeding a new cluster around data that exists without Raft: a restored backup, or a
//! standalone node's data directory (docs/backup.md §4). The seed's Raft state says that every
//! entry up to the engine's applied version `V` is committed, applied and purged, under a term-1
//! vote of the seed, with the configured members as voters; the log resumes at `V + 1`, so
//! versions keep increasing. The other members start empty and catch up by snapshot (the node
//! builds one at start, `startup.rs`).
//!
//! ```text
//!  engine (applied V, no Raft state) ─ layout::prepare (marks the storage layout) ─▶
//!  seed_cluster ─▶ one synced batch:
//!     raft_state (group 0's keys): vote (1, seed, committed), committed = last_purged = (1, seed, V)
//!     meta: raft/last_applied = (1, seed, V), raft/last_membership = ((1, seed, V), members)
//! ```

use std::collections::BTreeMap;

use dolmen_engine::{Engine, CF_META, CF_RAFT_LOG, CF_RAFT_STATE};
use openraft::impls::leader_id_adv::LeaderId;
use rocksdb::{WriteBatch, WriteOptions};

use crate::codec;
use crate::log_store::{layout, state_key, COMMITTED, LAST_PURGED, VOTE};
use crate::state_machine::{META_LAST_APPLIED, META_LAST_MEMBERSHIP};
use crate::types::{LogId, Membership, NodeAddr, StoredMembership, Vote, GROUP_ID};
use crate::NodeId;

/// The term the seed's state is written in; the first election after it starts term 2.
const SEED_TERM: u64 = 1;

/// Why a node cannot be seeded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The engine has no data: there is nothing to seed a cluster around.
    #[error("the data directory holds no data (applied version 0); start the members empty and let them form the cluster instead")]
    NoData,
    /// The node already has Raft state.
    #[error("the node already belongs to a cluster (it has a Raft {what}); seeding is only for data without Raft state")]
    AlreadyMember {
        /// What was found: `vote`, `log` or `applied state`.
        what: &'static str,
    },
    /// The seed is not among the members.
    #[error("node {seed} is not among the configured members {members:?}")]
    NotAMember {
        /// The seed.
        seed: NodeId,
        /// The members.
        members: Vec<NodeId>,
    },
    /// RocksDB or encoding failed.
    #[error("writing the Raft state: {0}")]
    Storage(String),
}

/// Makes node `seed` the first member of a new cluster of `members` around the engine's data,
/// which must have no Raft state. Returns the log index the cluster starts from (the engine's
/// applied version). Offline: the node must not be running.
pub fn seed_cluster(
    engine: &Engine,
    members: &BTreeMap<NodeId, NodeAddr>,
    seed: NodeId,
) -> Result<u64, SeedError> {
    if !members.contains_key(&seed) {
        return Err(SeedError::NotAMember {
            seed,
            members: members.keys().copied().collect(),
        });
    }
    let version = engine.applied_version();
    if version == 0 {
        return Err(SeedError::NoData);
    }
    let db = engine.db();
    // The keys below are layout 2's: the layout is checked (and a layout-1 log migrated, so
    // that its state is seen below) first.
    layout::prepare(db).map_err(|e| SeedError::Storage(e.to_string()))?;
    let storage = |e: rocksdb::Error| SeedError::Storage(e.to_string());
    let handle = |name: &str| {
        db.cf_handle(name)
            .ok_or_else(|| SeedError::Storage(format!("column family {name} is missing")))
    };
    let (state, log, meta) = (
        handle(CF_RAFT_STATE)?,
        handle(CF_RAFT_LOG)?,
        handle(CF_META)?,
    );
    let key = |name: &[u8]| state_key(GROUP_ID, name);
    if db.get_cf(state, key(VOTE)).map_err(storage)?.is_some() {
        return Err(SeedError::AlreadyMember { what: "vote" });
    }
    if db
        .iterator_cf(log, rocksdb::IteratorMode::Start)
        .next()
        .is_some()
        || db
            .get_cf(state, key(LAST_PURGED))
            .map_err(storage)?
            .is_some()
    {
        return Err(SeedError::AlreadyMember { what: "log" });
    }
    if db
        .get_cf(meta, META_LAST_APPLIED)
        .map_err(storage)?
        .is_some()
    {
        return Err(SeedError::AlreadyMember {
            what: "applied state",
        });
    }

    let log_id = LogId {
        leader_id: LeaderId {
            term: SEED_TERM,
            node_id: seed,
        },
        index: version,
    };
    // Every configured member is a voter, as `Raft::initialize` makes them.
    let membership = Membership::from(members.clone());
    let stored = StoredMembership::new(Some(log_id), membership);
    let vote = Vote::new_committed(SEED_TERM, seed);
    let encoded_log_id = codec::encode_log_id(&log_id);

    let mut batch = WriteBatch::default();
    batch.put_cf(state, key(VOTE), codec::encode_vote(&vote));
    batch.put_cf(state, key(COMMITTED), &encoded_log_id);
    batch.put_cf(state, key(LAST_PURGED), &encoded_log_id);
    batch.put_cf(meta, META_LAST_APPLIED, &encoded_log_id);
    batch.put_cf(
        meta,
        META_LAST_MEMBERSHIP,
        codec::encode_stored_membership(&stored).map_err(|e| SeedError::Storage(e.to_string()))?,
    );
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    db.write_opt(batch, &synced).map_err(storage)?;
    Ok(version)
}
