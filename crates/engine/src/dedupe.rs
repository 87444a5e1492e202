//! The idempotency (dedupe) table: per client, the sequence and outcome of its latest commit,
//! in `meta/dedupe/<client_id>`, so a retried commit gets its first outcome and is not applied
//! twice. The entry's encoding is docs/encoding.md's "dedupe entry".

use std::collections::BTreeMap;

use rocksdb::WriteBatch;

use crate::command::{IdempotencyToken, Outcome};
use crate::encoding::{self, DecodeError, EncodeError, Reader, Writer};
use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys;
use crate::options::CF_META;

/// `FORMAT_V1 ‖ be64 sequence ‖ outcome`.
pub(crate) fn encode_entry(sequence: u64, outcome: &Outcome) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new("dedupe entry");
    w.u64(sequence);
    encoding::put_outcome(&mut w, outcome)?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_entry`]: `(sequence, outcome)`.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<(u64, Outcome), DecodeError> {
    Reader::whole("dedupe entry", bytes, |r| {
        let sequence = r.u64("sequence")?;
        Ok((sequence, encoding::read_outcome(r)?))
    })
}

/// Whether a retry of a commit should get `outcome` back: `Rejected` is recomputed from the
/// command itself and `Applied` is not a commit's, so neither is remembered.
fn remembered(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Committed { .. } | Outcome::Conflict { .. } | Outcome::TooOld { .. }
    )
}

/// The dedupe table as one batch sees it: `data`'s entries plus those written earlier in the
/// batch.
#[derive(Default)]
pub(crate) struct Dedupe {
    written: BTreeMap<Vec<u8>, (u64, Outcome)>,
}

impl Dedupe {
    /// The latest `(sequence, outcome)` remembered for `client_id`, if any.
    pub(crate) fn latest(
        &self,
        engine: &Engine,
        client_id: &[u8],
    ) -> Result<Option<(u64, Outcome)>, StorageError> {
        if let Some(entry) = self.written.get(client_id) {
            return Ok(Some(entry.clone()));
        }
        let Some(raw) = engine
            .db
            .get_pinned_cf(engine.cf(CF_META), keys::dedupe_key(client_id))?
        else {
            return Ok(None);
        };
        Ok(Some(decode_entry(&raw)?))
    }

    /// Puts the outcome of the commit carrying `token` into `batch`, if it is worth remembering.
    pub(crate) fn record(
        &mut self,
        engine: &Engine,
        batch: &mut WriteBatch,
        token: &IdempotencyToken,
        outcome: &Outcome,
    ) -> Result<(), StorageError> {
        if !remembered(outcome) {
            return Ok(());
        }
        let value = encode_entry(token.sequence, outcome)?;
        batch.put_cf(
            engine.cf(CF_META),
            keys::dedupe_key(&token.client_id),
            value,
        );
        self.written
            .insert(token.client_id.clone(), (token.sequence, outcome.clone()));
        Ok(())
    }
}
