//! The admin HTTP calls the runner makes to its nodes, through `dolmen_server::admin_client`:
//! plain calls, and [`call_json`] for requests with a JSON body (`PUT /debug/network-faults`).

pub use dolmen_server::admin_client::{call, call_json};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use hyper::Method;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one request on a fresh port: returns the address and a handle yielding the raw
    /// request text; answers `status` with `body`.
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
    async fn call_json_sends_the_body_and_parses_the_answer() {
        let (addr, server) = one_shot("200 OK", r#"{"rules":[{"to":1,"action":"drop"}]}"#).await;
        let rules = serde_json::json!({"rules": [{"to": 1, "action": "drop"}]});
        let answer = call_json(
            Method::PUT,
            &addr,
            "/debug/network-faults",
            &rules,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(answer["rules"][0]["action"], "drop");
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
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            rules
        );
    }

    #[tokio::test]
    async fn call_json_reports_a_refusal_with_its_status() {
        let (addr, _server) = one_shot("404 Not Found", r#"{"error":"no such endpoint"}"#).await;
        let e = call_json(
            Method::PUT,
            &addr,
            "/debug/network-faults",
            &serde_json::json!({}),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("404") && text.contains("no such endpoint"),
            "{text}"
        );
    }
}
