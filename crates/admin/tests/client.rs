//! The admin client against one-shot HTTP servers: what it sends, and how each kind of answer
//! (success, JSON refusal, plain-text refusal, wrong JSON, no answer, no server) comes back.

use std::time::Duration;

use dolmen_admin::{
    blocking, AdminClient, AdminError, ErrorCode, MembershipOutcome, Readiness, Rule, RuleAction,
    RuleSet,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves one request on a fresh port: returns the address and a handle yielding the raw
/// request text; answers `status` with `body`, or never answers when `status` is empty.
async fn one_shot(
    status: &'static str,
    body: &'static str,
) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read the head, then the body announced by Content-Length.
        for _ in 0..1000 {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len || n == 0 {
                    break;
                }
            }
        }
        if status.is_empty() {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&buf).to_string()
    });
    (addr, handle)
}

#[tokio::test]
async fn set_network_faults_sends_the_rules_as_json_and_reads_the_answer() {
    let (addr, server) = one_shot("200 OK", r#"{"rules":[{"to":1,"action":"drop"}]}"#).await;
    let rules = RuleSet {
        rules: vec![Rule {
            to: Some(1),
            ..Rule::new(RuleAction::Drop)
        }],
    };
    let answer = AdminClient::new(&addr)
        .set_network_faults(&rules)
        .await
        .unwrap();
    assert_eq!(answer, rules);
    let request = server.await.unwrap();
    assert!(
        request.starts_with("PUT /debug/network-faults HTTP/1.1"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{request}"
    );
    let body = request.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(serde_json::from_str::<RuleSet>(body).unwrap(), rules);
}

#[tokio::test]
async fn a_not_leader_refusal_is_recognised_by_its_code_and_names_the_leader() {
    let (addr, _server) = one_shot(
        "409 Conflict",
        r#"{"error":"node 1 is not the leader: the leader is node 2","code":"not_leader","leader":2}"#,
    )
    .await;
    let e = AdminClient::new(&addr).remove_node(3).await.unwrap_err();
    assert!(e.is_not_leader(), "{e:?}");
    assert_eq!(e.leader(), Some(2));
    assert_eq!(e.status(), Some(409));
    let text = e.to_string();
    assert!(
        text.contains("409 Conflict") && text.contains("is not the leader"),
        "{text}"
    );
}

#[tokio::test]
async fn a_409_without_the_not_leader_code_is_another_refusal() {
    let (addr, _server) = one_shot(
        "409 Conflict",
        r#"{"error":"removing node 0 would leave 2 voters: no majority","code":"conflict"}"#,
    )
    .await;
    let e = AdminClient::new(&addr).remove_node(0).await.unwrap_err();
    assert!(!e.is_not_leader(), "{e:?}");
    assert_eq!(e.code(), Some(ErrorCode::Conflict));
}

#[tokio::test]
async fn a_plain_text_refusal_keeps_its_status_and_text() {
    let (addr, _server) = one_shot("404 Not Found", "no such endpoint").await;
    let e = AdminClient::new(&addr).network_faults().await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("404") && text.contains("no such endpoint"),
        "{text}"
    );
    assert!(
        matches!(e, AdminError::Refused { status: 404, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_success_with_the_wrong_json_is_a_bad_answer() {
    let (addr, _server) = one_shot("200 OK", r#"{"outcome":"exploded"}"#).await;
    let e = AdminClient::new(&addr)
        .transfer_leader(1)
        .await
        .unwrap_err();
    assert!(
        matches!(e, AdminError::BadAnswer { status: 200, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_node_that_does_not_answer_times_out() {
    let (addr, _server) = one_shot("", "").await;
    let e = AdminClient::new(&addr)
        .with_timeout(Duration::from_millis(300))
        .status()
        .await
        .unwrap_err();
    assert!(matches!(e, AdminError::Timeout { .. }), "{e:?}");
    assert!(e.is_unreachable());
}

#[tokio::test]
async fn no_server_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = AdminClient::new(format!("127.0.0.1:{port}"))
        .ready()
        .await
        .unwrap_err();
    assert!(matches!(e, AdminError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("cannot reach the admin API"), "{e}");
}

#[test]
fn a_not_ready_answer_in_json_reads_as_its_reasons() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body = r#"{"ready":false,"leader":0,"applied_version":12,"reasons":[{"condition":"disk_full","detail":"disk full: 3 MiB free on /d/node-0, below [database] min_free_disk_mb = 1024; writes are refused until space is freed, reads are still served"},{"condition":"a_newer_one","detail":"x"}]}"#;
    let (addr, _a) = rt.block_on(one_shot("503 Service Unavailable", body));
    let answer: dolmen_admin::ReadyAnswer = serde_json::from_str(body).unwrap();
    assert_eq!(
        answer.reasons[1].condition,
        dolmen_admin::NotReadyCondition::Unknown,
        "an older client reads a newer condition"
    );
    match blocking::AdminClient::new(&addr).ready().unwrap() {
        Readiness::NotReady(why) => {
            assert!(
                why.starts_with("disk full: 3 MiB free on /d/node-0"),
                "{why}"
            );
            assert!(why.ends_with("; x"), "{why}");
        }
        other => panic!("expected not ready, got {other:?}"),
    }
}

#[test]
fn the_blocking_client_reads_readiness_and_outcomes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ready, _a) = rt.block_on(one_shot(
        "503 Service Unavailable",
        "not ready: leader=None\n",
    ));
    let (added, _b) = rt.block_on(one_shot("200 OK", r#"{"outcome":"changed"}"#));
    assert_eq!(
        blocking::AdminClient::new(&ready).ready().unwrap(),
        Readiness::NotReady("not ready: leader=None".into())
    );
    let node = dolmen_admin::AddNode {
        id: 4,
        client_addr: "127.0.0.1:1".into(),
        peer_addr: "127.0.0.1:2".into(),
        admin_addr: String::new(),
    };
    assert_eq!(
        blocking::AdminClient::new(&added).add_node(&node).unwrap(),
        MembershipOutcome::Changed
    );
}
