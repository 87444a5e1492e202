//! `InstallSnapshot` streaming: a large file arrives byte-identical, a cancelled transfer reports
//! closed, a broken stream is refused and its partial file deleted.

use super::*;

/// Deterministic non-repeating bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn a_5_mib_snapshot_arrives_byte_identical_with_its_meta() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;

    let source_dir = tempfile::tempdir().expect("temp dir");
    let path = source_dir.path().join("snapshot.bin");
    let data = pattern(5 * 1024 * 1024 + 123);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&data))
        .expect("write the snapshot file");
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(7, 0, 500)),
        last_membership: StoredMembership::new(Some(log_id(6, 0, 3)), membership()),
    };
    let snapshot = Snapshot {
        meta: meta.clone(),
        snapshot: SnapshotFile { path: path.clone() },
    };
    let leader_vote = vote(7, 0, true);
    let resp = RaftNetworkV2::full_snapshot(
        &mut net,
        leader_vote,
        snapshot,
        std::future::pending::<ReplicationClosed>(),
        RPCOption::new(TTL),
    )
    .await
    .expect("snapshot transfer succeeds");
    assert_eq!(resp.vote, leader_vote);

    let received = server.mock.snapshots.lock().clone();
    assert_eq!(received.len(), 1);
    let (got_vote, got_meta, got_path, got_bytes) = &received[0];
    assert_eq!(*got_vote, leader_vote);
    assert_eq!(*got_meta, meta);
    assert!(
        got_path.starts_with(server.dir.path()),
        "{}",
        got_path.display()
    );
    assert_eq!(got_bytes.len(), data.len());
    assert!(
        *got_bytes == data,
        "received bytes differ from the sent file"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_snapshot_transfer_reports_closed() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("snapshot.bin");
    std::fs::write(&path, pattern(1024)).expect("write");
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            last_log_id: Some(log_id(1, 0, 1)),
            last_membership: StoredMembership::new(None, membership()),
        },
        snapshot: SnapshotFile { path },
    };
    let err = RaftNetworkV2::full_snapshot(
        &mut net,
        vote(1, 0, true),
        snapshot,
        std::future::ready(ReplicationClosed::new("test cancels")),
        RPCOption::new(TTL),
    )
    .await
    .expect_err("cancelled");
    assert!(matches!(err, StreamingError::Closed(_)), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_broken_snapshot_stream_is_refused_and_its_file_deleted() {
    let server = Server::start().await;
    let mut raw = pb::peer_client::PeerClient::connect(format!("http://{}", server.addr))
        .await
        .expect("connect");
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(1, 0, 5)),
        last_membership: StoredMembership::new(None, membership()),
    };
    let header =
        dolmen_raft::network::wire::snapshot_header_to_pb(0, &vote(1, 0, true), &meta, 1000)
            .expect("header encodes");
    let chunks = vec![
        pb::SnapshotChunk {
            chunk: Some(pb::snapshot_chunk::Chunk::Header(header)),
        },
        pb::SnapshotChunk {
            chunk: Some(pb::snapshot_chunk::Chunk::Data(vec![1; 400])),
        },
    ];
    let status = raw
        .install_snapshot(tokio_stream::iter(chunks))
        .await
        .expect_err("a short stream is refused");
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("400 of 1000"),
        "{}",
        status.message()
    );
    // The partial file is deleted (on a blocking thread, so allow a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.files().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server.files().is_empty(),
        "left behind: {:?}",
        server.files()
    );
    assert!(server.mock.snapshots.lock().is_empty());
    server.stop().await;
}
