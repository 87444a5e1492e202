//! [`Transaction`]: reads at one read version, writes buffered on the client, committed by
//! exactly one `atomicCommit` with the read conflict ranges and an idempotency token.
//!
//! ```text
//!   get/get_range ─▶ overlay (buffered writes) ─miss─▶ snapshotRead/snapshotGetRange @ rv
//!        │                                                  (rv = getReadVersion, lazily)
//!        └─▶ read conflict ranges ─┐
//!   set/delete/clear_range/… ─▶ operations ─┴─▶ commit ─▶ atomicCommit(rv, ops, ranges, token)
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use dolmen_api::gen;
use pilota::Bytes;

use crate::database::{Database, Lane};
use crate::error::Error;
use crate::overlay::{key_after, Local, Overlay};
use crate::retry::Backoff;

/// Length of a versionstamp: 8-byte big-endian commit version + 2-byte big-endian order.
pub const VERSIONSTAMP_LEN: usize = 10;

/// Largest page requested from the server while merging a range.
const RANGE_PAGE: usize = 1000;

/// The outcome of a successful commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The version the transaction's writes were applied at.
    pub version: i64,
    /// The commit's versionstamp base (order 0); see [`Committed::versionstamp_of`].
    pub versionstamp: [u8; VERSIONSTAMP_LEN],
}

impl Committed {
    /// The 10-byte stamp written by the operation `op` (as returned by
    /// [`Transaction::set_versionstamped_key`] / [`Transaction::set_versionstamped_value`]).
    pub fn versionstamp_of(&self, op: OpIndex) -> [u8; VERSIONSTAMP_LEN] {
        let mut stamp = self.versionstamp;
        stamp[8..].copy_from_slice(&op.0.to_be_bytes());
        stamp
    }
}

/// The position of a versionstamped operation within its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpIndex(u16);

#[derive(Debug)]
struct State {
    /// Column family of subsequent calls.
    cf: String,
    /// Fetched on the first read (or at commit for blind writes).
    read_version: Option<i64>,
    operations: Vec<gen::Operation>,
    overlay: HashMap<String, Overlay>,
    read_conflicts: Vec<gen::ConflictRange>,
    /// Held for the transaction's lifetime; returned to the database on drop.
    lane: Option<Lane>,
    /// This attempt-group's `client_sequence`.
    sequence: i64,
    /// The request sent by `commit`: a second `commit` resends it unchanged.
    sent: Option<gen::AtomicCommitRequest>,
    /// A commit with this `sequence` failed with an unknown outcome and no later commit with it
    /// got a definite answer: retries must keep the token, whatever failed in between.
    outcome_unknown: bool,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    state: Mutex<State>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let lane = self
            .state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .lane
            .take();
        if let Some(lane) = lane {
            self.db.inner.return_lane(lane);
        }
    }
}

/// A transaction: a cheap handle (clones share it), usable from the `transact` closure.
///
/// Reads see the database at one read version plus this transaction's own buffered writes;
/// writes are sent only by [`Transaction::commit`]. After a commit the transaction is frozen:
/// `commit` again resends the identical request (same idempotency token) and returns the first
/// outcome.
#[derive(Debug, Clone)]
pub struct Transaction {
    inner: Arc<Inner>,
}

fn cf_bytes(cf: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(cf.as_bytes()))
}

impl Transaction {
    pub(crate) fn new(db: Database) -> Self {
        let mut lane = db.inner.take_lane();
        let sequence = lane.take_sequence();
        let cf = db.inner.options.column_family.clone();
        Transaction {
            inner: Arc::new(Inner {
                db,
                state: Mutex::new(State {
                    cf,
                    read_version: None,
                    operations: Vec::new(),
                    overlay: HashMap::new(),
                    read_conflicts: Vec::new(),
                    lane: Some(lane),
                    sequence,
                    sent: None,
                    outcome_unknown: false,
                }),
            }),
        }
    }

    /// Never held across an `.await`.
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes subsequent reads and writes of this transaction use column family `cf`.
    pub fn use_column_family(&self, cf: &str) {
        self.state().cf = cf.to_owned();
    }

    /// The column family reads and writes currently use.
    pub fn column_family(&self) -> String {
        self.state().cf.clone()
    }

    /// The read version, fetched with `getReadVersion` on first use.
    pub async fn read_version(&self) -> Result<i64, Error> {
        if let Some(v) = self.state().read_version {
            return Ok(v);
        }
        let fetched = self
            .inner
            .db
            .inner
            .router
            .read(|c| async move { c.read_version().await })
            .await?;
        // A concurrent read may have set it meanwhile: the first one wins.
        Ok(*self.state().read_version.get_or_insert(fetched))
    }

    fn local(&self, cf: &str, key: &[u8]) -> Local {
        self.state()
            .overlay
            .get(cf)
            .map_or(Local::Miss, |overlay| overlay.local(key))
    }

    async fn read(&self, key: &[u8], conflict: bool) -> Result<Option<Vec<u8>>, Error> {
        let cf = self.column_family();
        match self.local(&cf, key) {
            Local::Value(v) => return Ok(v),
            Local::Unreadable => {
                return Err(Error::Usage {
                    message: format!(
                        "key {key:?} holds a pending versionstamped value, unknown until commit"
                    ),
                })
            }
            Local::Miss => {}
        }
        let rv = self.read_version().await?;
        let value = self
            .inner
            .db
            .inner
            .router
            .read(|c| {
                let cf = cf.clone();
                let key = key.to_vec();
                async move { c.snapshot_read(&cf, &key, rv).await }
            })
            .await?;
        if conflict {
            self.add_read_conflict_range(key, &key_after(key));
        }
        Ok(value.map(|v| v.to_vec()))
    }

    /// The value of `key` (`None` when absent) as this transaction sees it; recorded as a read
    /// conflict unless answered by this transaction's own writes.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.read(key, true).await
    }

    /// Like [`Transaction::get`] but records no conflict: a later write of `key` by others does
    /// not abort this transaction.
    pub async fn snapshot_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.read(key, false).await
    }

    /// Records `[begin, end)` of the current column family as read: the commit fails with
    /// `CONFLICT` if another transaction wrote there after the read version.
    pub fn add_read_conflict_range(&self, begin: &[u8], end: &[u8]) {
        let mut state = self.state();
        let cf = cf_bytes(&state.cf);
        state.read_conflicts.push(gen::ConflictRange {
            begin_key: Bytes::copy_from_slice(begin),
            end_key: Bytes::copy_from_slice(end),
            column_family: cf,
        });
    }

    /// The keys in `[begin, end)` with their values, ascending, at most `limit` (0 = no limit),
    /// as this transaction sees them (the snapshot merged with buffered writes). The range read
    /// (up to the last key returned when the limit cut it short) is recorded as a conflict range.
    pub async fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        let rv = self.read_version().await?;
        let (cf, mut merge) = {
            let state = self.state();
            let cf = state.cf.clone();
            let merge = match state.overlay.get(&cf) {
                Some(o) => o.range(begin, end, limit, RANGE_PAGE),
                None => Overlay::default().range(begin, end, limit, RANGE_PAGE),
            };
            let merge = merge.map_err(|k| Error::Usage {
                message: format!("range holds key {k:?} with a pending versionstamped value"),
            })?;
            (cf, merge)
        };
        let router = &self.inner.db.inner.router;
        while let Some(page) = merge.next_page() {
            let (pairs, more) = router
                .read(|c| {
                    let (cf, page) = (cf.clone(), page.clone());
                    async move {
                        c.snapshot_range(
                            &cf,
                            (&page.cursor, page.inclusive),
                            &page.end,
                            page.limit,
                            rv,
                        )
                        .await
                    }
                })
                .await?;
            merge.absorb(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect(),
                more,
            );
        }
        let (out, conflict) = merge.finish();
        if let Some(conflict) = conflict {
            self.add_read_conflict_range(&conflict.start, &conflict.end);
        }
        Ok(out)
    }

    fn push(&self, kind: &'static [u8], key: &[u8], value: Option<&[u8]>) -> usize {
        let mut state = self.state();
        let cf = cf_bytes(&state.cf);
        state.operations.push(gen::Operation {
            r#type: Bytes::from_static(kind),
            key: Bytes::copy_from_slice(key),
            value: value.map(Bytes::copy_from_slice),
            column_family: cf,
        });
        state.operations.len() - 1
    }

    fn overlay_mut<R>(&self, f: impl FnOnce(&mut Overlay) -> R) -> R {
        let mut state = self.state();
        let cf = state.cf.clone();
        f(state.overlay.entry(cf).or_default())
    }

    /// Buffers a write of `value` at `key`.
    pub fn set(&self, key: &[u8], value: &[u8]) {
        self.push(b"set", key, Some(value));
        self.overlay_mut(|o| o.set(key, value));
    }

    /// Buffers a delete of `key`.
    pub fn delete(&self, key: &[u8]) {
        self.push(b"delete", key, None);
        self.overlay_mut(|o| o.delete(key));
    }

    /// Buffers a delete of every key in `[begin, end)` (Dolmen's `clear_range` operation).
    pub fn clear_range(&self, begin: &[u8], end: &[u8]) {
        self.push(b"clear_range", begin, Some(end));
        self.overlay_mut(|o| o.clear_range(begin, end));
    }

    fn op_index(index: usize) -> Result<OpIndex, Error> {
        u16::try_from(index).map(OpIndex).map_err(|_| Error::Usage {
            message: format!(
                "a versionstamped operation must be among the first 65,536 of a commit \
                 (this is operation {index})"
            ),
        })
    }

    fn check_stamp_buffer(what: &str, buffer: &[u8]) -> Result<(), Error> {
        if buffer.len() < VERSIONSTAMP_LEN {
            return Err(Error::Usage {
                message: format!(
                    "the {what} (length={}) must end with {VERSIONSTAMP_LEN} placeholder bytes \
                     for the versionstamp",
                    buffer.len()
                ),
            });
        }
        Ok(())
    }

    /// Buffers a write of `value` at `key_buffer` whose last 10 bytes are replaced by the
    /// commit's versionstamp; [`Committed::versionstamp_of`] with the returned index gives it.
    /// The key is unknown until commit, so this transaction cannot read it back.
    pub fn set_versionstamped_key(
        &self,
        key_buffer: &[u8],
        value: &[u8],
    ) -> Result<OpIndex, Error> {
        Self::check_stamp_buffer("key buffer", key_buffer)?;
        let index = Self::op_index(self.state().operations.len())?;
        self.push(b"SET_VERSIONSTAMPED_KEY", key_buffer, Some(value));
        Ok(index)
    }

    /// Buffers a write at `key` of `value_buffer` whose last 10 bytes are replaced by the
    /// commit's versionstamp. Reading `key` in this transaction afterwards is an error.
    pub fn set_versionstamped_value(
        &self,
        key: &[u8],
        value_buffer: &[u8],
    ) -> Result<OpIndex, Error> {
        Self::check_stamp_buffer("value buffer", value_buffer)?;
        let index = Self::op_index(self.state().operations.len())?;
        self.push(b"SET_VERSIONSTAMPED_VALUE", key, Some(value_buffer));
        self.overlay_mut(|o| o.set_versionstamped_value(key));
        Ok(index)
    }

    /// Commits: one `atomicCommit` with every buffered operation, the read conflict ranges and
    /// the idempotency token. A commit whose outcome is unknown (transport error, `TIMEOUT`) is
    /// resent unchanged up to [`crate::DatabaseOptions::commit_resends`] times.
    ///
    /// # Errors
    /// `CONFLICT` (and the other codes of docs/WIRE.md §4) as [`Error::Server`]; check
    /// [`Error::is_retryable`].
    pub async fn commit(&self) -> Result<Committed, Error> {
        let prepared = self.state().sent.clone();
        let request = match prepared {
            Some(request) => request,
            None => {
                let rv = self.read_version().await?;
                let mut state = self.state();
                let lane = state.lane.as_ref().map(|l| l.client_id.clone());
                let request = gen::AtomicCommitRequest {
                    read_version: rv,
                    operations: state.operations.clone(),
                    read_conflict_keys: Vec::new(),
                    timeout_seconds: None,
                    read_conflict_ranges: Some(state.read_conflicts.clone()),
                    client_id: lane,
                    client_sequence: Some(state.sequence),
                    want_versionstamp: Some(true),
                };
                state.sent = Some(request.clone());
                request
            }
        };
        let options = &self.inner.db.inner.options;
        let mut backoff = Backoff::new(options.initial_backoff, options.max_backoff);
        let mut resends = 0;
        let router = &self.inner.db.inner.router;
        let result = loop {
            let sent = router
                .write(|c| {
                    let request = request.clone();
                    async move { c.atomic_commit(request).await }
                })
                .await;
            match sent {
                Err(e) if e.is_maybe_committed() && resends < options.commit_resends => {
                    resends += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => break other,
            }
        };
        self.state().outcome_unknown = matches!(&result, Err(e) if e.is_maybe_committed());
        let resp = result?;
        let version = resp.committed_version.unwrap_or_default();
        let mut versionstamp = [0u8; VERSIONSTAMP_LEN];
        match resp.versionstamp {
            Some(stamp) if stamp.len() == VERSIONSTAMP_LEN => versionstamp.copy_from_slice(&stamp),
            _ => versionstamp[..8].copy_from_slice(&version.to_be_bytes()),
        }
        Ok(Committed {
            version,
            versionstamp,
        })
    }

    /// Clears reads, writes and the read version for another attempt. `keep_token` (the last
    /// commit's outcome is unknown) keeps the idempotency token so that the next commit returns
    /// the first outcome if it was applied; otherwise a new token is taken — unless an earlier
    /// commit of this token still has an unknown outcome (e.g. the attempt after it failed in a
    /// read), in which case the token is kept too.
    pub fn reset_for_retry(&self, keep_token: bool) {
        let mut state = self.state();
        state.read_version = None;
        state.operations.clear();
        state.overlay.clear();
        state.read_conflicts.clear();
        state.sent = None;
        state.cf = self.inner.db.inner.options.column_family.clone();
        if !keep_token && !state.outcome_unknown {
            if let Some(seq) = state.lane.as_mut().map(Lane::take_sequence) {
                state.sequence = seq;
            }
        }
    }
}
