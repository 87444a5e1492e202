//! `GET /backup`: the visible state at a fresh linearizable read version, streamed as frames
//! (`dolmen_admin::backup`) from one RocksDB snapshot. A blocking task reads the engine and
//! feeds a small channel, so a slow receiver slows the read; when the receiver goes away the
//! next send fails, the task ends, and the snapshot (the backup's pin) is released.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dolmen_admin::backup::{encode_frame, BackupHeader, BackupTrailer, FrameTag, STREAM_MAGIC};
use dolmen_admin::ErrorCode;
use dolmen_engine::{Checksum, Engine, StorageError, Version};
use tokio::sync::mpsc;

use super::{Refusal, Shared};

/// Records are sent in frames of about this many bytes.
const FRAME_BYTES: usize = 1 << 20;
/// Frames in flight between the reading task and the connection.
const FRAMES_IN_FLIGHT: usize = 4;

/// Starts the stream: a linearizable read version (waiting for this node to apply it), then
/// the export at it.
pub(super) async fn backup(State(shared): State<Shared>) -> Result<Response, Refusal> {
    if shared.state.engine.span().is_empty() {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            "backups of a sharded cluster are not built yet: this node's data is in its data \
             groups, which a backup does not cover",
        ));
    }
    let service = shared.state.service.clone();
    let version = service
        .read_version()
        .await
        .map_err(|e| Refusal::new(ErrorCode::Unavailable, format!("no read version: {e}")))?;
    let engine = shared.state.engine.clone();
    let header = BackupHeader {
        version,
        column_families: engine.column_families().map(str::to_owned).collect(),
        node_id: service.cluster().this_node,
        estimated_records: service.engine_stats().live_keys,
    };
    let (tx, rx) = mpsc::channel(FRAMES_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = stream(&engine, version, &header, &tx) {
            let error = serde_json::json!({ "error": e.to_string() }).to_string();
            let mut frame = Vec::new();
            encode_frame(FrameTag::Error, error.as_bytes(), &mut frame);
            let _ = tx.blocking_send(Ok(Bytes::from(frame)));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

type Sender = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Why a backup stream ended early; sent to the receiver in an error frame.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    /// The engine could not export or read at the version.
    #[error("reading at version {version}: {source}")]
    Read {
        /// The backup's version.
        version: Version,
        /// The engine's error.
        source: StorageError,
    },
    /// A header or trailer did not serialize (a bug).
    #[error("encoding the stream: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Sends the magic, the header, the records and the trailer. `Err` when the export fails;
/// `Ok` also when the receiver went away (nothing left to tell).
fn stream(
    engine: &Engine,
    version: Version,
    header: &BackupHeader,
    tx: &Sender,
) -> Result<(), StreamError> {
    let read = |source| StreamError::Read { version, source };
    let export = engine.export_visible(version).map_err(read)?;
    let mut out = STREAM_MAGIC.to_vec();
    let header = serde_json::to_vec(header)?;
    encode_frame(FrameTag::Header, &header, &mut out);
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut digest = Checksum::new();
    let mut chunk = Vec::with_capacity(FRAME_BYTES + (128 << 10));
    let send = |out: &mut Vec<u8>| {
        tx.blocking_send(Ok(Bytes::from(std::mem::take(out))))
            .is_ok()
    };
    for record in export {
        let record = record.map_err(read)?;
        record.encode_into(&mut chunk);
        records += 1;
        if chunk.len() >= FRAME_BYTES {
            bytes += chunk.len() as u64;
            digest.update(&chunk);
            encode_frame(FrameTag::Records, &chunk, &mut out);
            chunk.clear();
            if !send(&mut out) {
                return Ok(()); // the receiver is gone: stop reading, release the snapshot
            }
        }
    }
    if !chunk.is_empty() {
        bytes += chunk.len() as u64;
        digest.update(&chunk);
        encode_frame(FrameTag::Records, &chunk, &mut out);
    }
    let trailer = BackupTrailer {
        records,
        bytes,
        digest: format!("{:016x}", digest.finish()),
    };
    let trailer = serde_json::to_vec(&trailer)?;
    encode_frame(FrameTag::End, &trailer, &mut out);
    send(&mut out);
    Ok(())
}
