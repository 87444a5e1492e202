//! The web console in a real browser (issue 21, "How it is checked"; docs/console.md): a
//! three-node cluster with an operator credential, a headless Chromium driven through
//! chromedriver (W3C WebDriver), and the console of one node. The test checks that
//!
//! 1. the console loads with no error in the browser's console (the only accepted SEVERE
//!    entries are the 401 "Failed to load resource" lines of the write refused in 5);
//! 2. it shows the three members and the leader the harness sees;
//! 3. the leader shown changes after a leadership transfer;
//! 4. a key written through Thrift appears in the data browser;
//! 5. a write from the console is refused without the credential (and nothing is written),
//!    and succeeds, readable through Thrift, once the token is entered;
//! 6. the charts receive data (under a write load, the commits rate shows and the throughput
//!    chart draws its line above zero);
//! 7. every page renders (the node page with the admin token masked): a screenshot of each
//!    is kept as a test artifact, in `$DOLMEN_TEST_ARTIFACTS` or else
//!    `test-artifacts/console/` (gitignored), and its path printed.
//!
//! It needs `chromium` and `chromedriver` (Debian: `chromium`, `chromium-driver`), which
//! `scripts/install-deps.sh` installs (`make test` runs it first); `DOLMEN_CHROMIUM` and
//! `DOLMEN_CHROMEDRIVER` name other binaries. Without them the test fails, saying so.
//!
//! ```text
//!  test ── Thrift ───────────────────────────────▶ node T ◀── HTTP ── Chromium (headless)
//!   │ └─── transfer_leader (harness admin client) ─▶ leader       ▲
//!   └── fantoccini ── HTTP ──▶ chromedriver (own process group) ─┘ spawns, killed with it
//! ```
//!
//! Run: `cargo build --workspace --all-targets &&
//! cargo test --workspace --test console_browser -- --nocapture`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_tests::replicated::{unique_prefix, wait_until, LEADER_TIMEOUT};
use dolmen_tests::{connect_buffered, KvExt, ReplicatedCluster};
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// The operator credential of every node (`[server] admin_token`).
const TOKEN: &str = "console-browser-test-operator-token";
/// Poll interval of every wait on the page.
const POLL: Duration = Duration::from_millis(150);
/// How long the page may take to show something the test caused.
const PAGE_WAIT: Duration = Duration::from_secs(20);
/// How long the whole browser session may take (WebDriver calls have no timeout of their own).
const SESSION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long chromedriver may take to answer `/status`.
const DRIVER_START: Duration = Duration::from_secs(15);
/// The browser window's outer size (CSS pixels); a screenshot is its viewport.
const WINDOW: (u32, u32) = (1280, 900);
/// The console's pages, in tab order.
const PAGES: [&str; 5] = ["cluster", "metrics", "replication", "data", "node"];

// ---------------------------------------------------------------------------------------------
// chromedriver and Chromium
// ---------------------------------------------------------------------------------------------

/// `$var` when set (a path, or a name looked up on `PATH`, as `command -v` does), else `name`
/// on `PATH`.
///
/// # Panics
/// When there is none: the test must not pass silently on a machine without a browser.
fn program(var: &str, name: &str, package: &str) -> PathBuf {
    let wanted = std::env::var(var).unwrap_or_else(|_| name.to_owned());
    let found = if wanted.contains('/') {
        Some(PathBuf::from(&wanted)).filter(|p| p.is_file())
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(&wanted))
            .find(|p| p.is_file())
    };
    found.unwrap_or_else(|| {
        panic!(
            "the console's browser test needs `{wanted}` (Debian package {package}) and it is not \
             installed (looked for ${var}, else `{name}` on PATH): run scripts/install-deps.sh, \
             which installs it (`make test` runs it first)"
        )
    })
}

/// A port on loopback that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

/// `GET path` on `addr` (HTTP/1.1): the status line and the body (`Content-Length` bytes;
/// chromedriver keeps the connection open after its answer).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            if n == 0 || length.is_some_and(|l| body.len() >= l) {
                let status = head.lines().next().unwrap_or_default().to_owned();
                return Ok((status, body.to_owned()));
            }
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the connection closed mid-answer: {text:?}"),
            ));
        }
    }
}

/// A chromedriver process in its own process group (with the Chromium it starts), killed with
/// its whole group when dropped, pass or fail.
struct Driver {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// Chromium's profile (`--user-data-dir`) and chromedriver's log; deleted after the kill.
    dir: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits (bounded) until `/status` says
    /// it is ready.
    fn start(chromedriver: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dolmen-console-browser-")
            .tempdir()
            .expect("a temp dir for the browser");
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let mut cmd = Command::new(chromedriver);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("expected to start {}: {e}", chromedriver.display()));
        let mut driver = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            dir,
        };
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!(
                    "chromedriver exited at start ({status}); its log:\n{}",
                    driver.log_tail()
                );
            }
            let last = match http_get(driver.addr, "/status") {
                // `{"value":{"build":...,"message":"ChromeDriver ready for new sessions.",
                // "os":...,"ready":true}}`, perhaps in one chunk of a chunked body.
                Ok((status, body))
                    if status.contains(" 200 ") && body.contains("\"ready\":true") =>
                {
                    return driver
                }
                Ok((status, body)) => format!("{status}: {body}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "expected chromedriver to answer /status on {} within {DRIVER_START:?}, \
                     last: {last}; its log:\n{}",
                    driver.addr,
                    driver.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver and every Chromium process it started share its process group.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _gone = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _reaped = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "==== chromedriver log (last 40 lines) ====\n{}",
                self.log_tail()
            );
        }
    }
}

/// The WebDriver session's capabilities: headless Chromium as root in a fresh profile, and
/// every browser console entry kept for [`BrowserLog`].
fn capabilities(chromium: &Path, profile: &Path) -> Capabilities {
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={},{}", WINDOW.0, WINDOW.1),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": chromium, "args": args},
        "goog:loggingPrefs": {"browser": "ALL"},
        "timeouts": {"pageLoad": PAGE_WAIT.as_millis() as u64, "script": 10_000, "implicit": 0},
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the browser's console: the entries logged
/// since the previous call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// One browser console entry.
#[derive(Clone, Debug)]
struct LogEntry {
    level: String,
    message: String,
}

async fn browser_log(c: &Client) -> Vec<LogEntry> {
    let answer = c
        .issue_cmd(BrowserLog)
        .await
        .unwrap_or_else(|e| panic!("expected chromedriver to give the browser log: {e}"));
    answer
        .as_array()
        .unwrap_or_else(|| panic!("expected a list of log entries, got {answer}"))
        .iter()
        .map(|e| LogEntry {
            level: e["level"].as_str().unwrap_or_default().to_owned(),
            message: e["message"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// The one kind of SEVERE entry the test causes on purpose: the browser reporting the 401 of
/// the console's write without a credential (step 5).
fn is_expected_refusal(e: &LogEntry) -> bool {
    e.message.contains("/data/key")
        && e.message.contains("Failed to load resource")
        && e.message.contains("status of 401")
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

/// Runs `script` (a function body) in the page.
async fn js(c: &Client, script: &str, args: Vec<Value>) -> Value {
    c.execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("expected the page to run {script:?}: {e}"))
}

/// Polls `script` every [`POLL`] until it returns an object whose `done` is true, and returns
/// that object; panics after `timeout` with the last one.
async fn wait_page(c: &Client, what: &str, script: &str, args: Vec<Value>) -> Value {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let v = js(c, script, args.clone()).await;
        if v["done"].as_bool() == Some(true) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("expected {what} within {PAGE_WAIT:?}; the page last showed: {v}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("expected {css} on the page: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("expected to click {css}: {e}"));
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let field = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("expected {css} on the page: {e}"));
    field
        .clear()
        .await
        .unwrap_or_else(|e| panic!("expected to clear {css}: {e}"));
    field
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("expected to type into {css}: {e}"));
}

async fn select(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("expected {css} on the page: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("expected to select {value} in {css}: {e}"));
}

/// Clicks the page's tab and waits until the page shows (and its tab is the active one).
async fn open_page(c: &Client, page: &str) {
    click(c, &format!("#tab-{page}")).await;
    wait_page(
        c,
        &format!("the {page} page to show"),
        "const p = document.getElementById('page-' + arguments[0]);
         const t = document.getElementById('tab-' + arguments[0]);
         return {done: !p.hidden && t.classList.contains('active') && location.hash === '#' + arguments[0],
                 hash: location.hash, hidden: p.hidden};",
        vec![json!(page)],
    )
    .await;
}

/// What `#write-result` says after a write: `data-status`, `data-code` and the text.
struct WriteAnswer {
    status: String,
    code: String,
    text: String,
}

/// The console's write form: fills it, clicks `put`, confirms, and waits for the answer.
/// A linearizable `get` through Thrift that waits out a moment without a quorum (right after
/// the leadership transfer above, under load): the first answer that is not `UNAVAILABLE`.
fn definite_get(kv: &mut dolmen_tests::KvClient, key: &[u8]) -> dolmen_tests::kvstore::GetResponse {
    let mut answer = kv.get_value(key);
    for _ in 0..100 {
        let unavailable = answer
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("UNAVAILABLE"));
        if !unavailable {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        answer = kv.get_value(key);
    }
    answer
}

async fn console_put(c: &Client, key: &str, value: &str) -> WriteAnswer {
    type_into(c, "#write-key", key).await;
    type_into(c, "#write-value", value).await;
    select(c, "#write-encoding", "text").await;
    click(c, "#write-submit").await;
    let asked = wait_page(
        c,
        "the confirmation dialog",
        "const m = document.getElementById('confirm');
         return {done: !m.hidden, text: document.getElementById('confirm-text').textContent};",
        vec![],
    )
    .await;
    assert!(
        asked["text"].as_str().unwrap_or_default().contains(key),
        "expected the confirmation to name the key {key}, it says {}",
        asked["text"]
    );
    click(c, "#confirm-yes").await;
    let answer = wait_page(
        c,
        "the write's answer in #write-result",
        "const r = document.getElementById('write-result');
         return {done: r.dataset.status === 'ok' || r.dataset.status === 'error',
                 status: r.dataset.status, code: r.dataset.code || '', text: r.textContent,
                 dialog_hidden: document.getElementById('confirm').hidden};",
        vec![],
    )
    .await;
    assert_eq!(answer["dialog_hidden"], json!(true), "{answer}");
    let field = |name: &str| answer[name].as_str().unwrap_or_default().to_owned();
    WriteAnswer {
        status: field("status"),
        code: field("code"),
        text: field("text"),
    }
}

/// Where the screenshots go: `$DOLMEN_TEST_ARTIFACTS`, else `<workspace>/test-artifacts/console`.
fn artifacts_dir() -> PathBuf {
    match std::env::var_os("DOLMEN_TEST_ARTIFACTS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-artifacts/console"),
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn the_console_works_in_a_real_browser() {
    let started = Instant::now();
    // Before anything slow: a machine without the browser fails here, saying what to run.
    let chromium = program("DOLMEN_CHROMIUM", "chromium", "chromium");
    let chromedriver = program("DOLMEN_CHROMEDRIVER", "chromedriver", "chromium-driver");

    let cluster = ReplicatedCluster::builder()
        .set("server", "admin_token", TOKEN)
        .start();
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    // The console watched is the node that becomes the leader in step 3, so that its
    // replication page ends with the followers' lag.
    let node = (leader + 1) % cluster.node_count();
    let console = format!("http://{}/", cluster.admin_endpoint(node));
    println!(
        "cluster up in {:.1}s: leader {leader}; watching node {node}'s console at {console}",
        started.elapsed().as_secs_f64()
    );

    let driver = Driver::start(&chromedriver);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the WebDriver client");
    let session = async {
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities(&chromium, &driver.profile()))
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| panic!("expected a Chromium session from chromedriver: {e}"));
        let version = c
            .capabilities()
            .and_then(|caps| caps.get("browserVersion"))
            .cloned()
            .unwrap_or(Value::Null);
        println!(
            "browser: Chromium {version} through chromedriver on {} ({:.1}s)",
            driver.addr,
            started.elapsed().as_secs_f64()
        );
        c.set_window_size(WINDOW.0, WINDOW.1)
            .await
            .unwrap_or_else(|e| panic!("expected to size the window: {e}"));
        check_console(&c, &cluster, leader, node, &console).await;
        c.close()
            .await
            .unwrap_or_else(|e| panic!("expected the session to close: {e}"));
    };
    if runtime
        .block_on(async { tokio::time::timeout(SESSION_TIMEOUT, session).await })
        .is_err()
    {
        panic!("expected the browser session to end within {SESSION_TIMEOUT:?}");
    }
    drop(driver);
    println!(
        "console browser test done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

async fn check_console(
    c: &Client,
    cluster: &ReplicatedCluster,
    leader: usize,
    node: usize,
    console: &str,
) {
    let mut log: Vec<LogEntry> = Vec::new();

    // 1. The console loads and reaches its node.
    let t = Instant::now();
    c.goto(console)
        .await
        .unwrap_or_else(|e| panic!("expected the browser to load {console}: {e}"));
    let title = c.title().await.unwrap_or_default();
    assert_eq!(
        title, "Dolmen console",
        "expected the console's page at {console}"
    );
    let up = wait_page(
        c,
        "#conn-state to say the node is up",
        "const s = document.getElementById('conn-state');
         return {done: s.dataset.state === 'up', state: s.dataset.state, text: s.textContent,
                 node: document.getElementById('hdr-node').textContent,
                 mode: document.getElementById('hdr-mode').textContent};",
        vec![],
    )
    .await;
    assert_eq!(up["node"], json!(format!("node {node}")), "{up}");
    assert_eq!(up["mode"], json!("replicated"), "{up}");
    println!(
        "1. console loaded, connected in {} ms: {} {}",
        t.elapsed().as_millis(),
        up["node"],
        up["mode"]
    );
    log.extend(browser_log(c).await);

    // 2. Three members and the leader.
    let shown = wait_page(
        c,
        &format!("three healthy members and leader {leader} on the cluster page"),
        "const rows = Array.from(document.querySelectorAll('#members tbody tr[data-node-id]'));
         const l = document.getElementById('leader');
         const leaders = rows.filter((r) => r.dataset.role === 'leader').map((r) => r.dataset.nodeId);
         return {done: rows.length === 3 && l.dataset.leaderId === arguments[0]
                       && l.textContent === arguments[0]
                       && leaders.length === 1 && leaders[0] === arguments[0]
                       && rows.every((r) => r.querySelector('.health').textContent === 'healthy'),
                 leader: l.textContent,
                 rows: rows.map((r) => 'node ' + r.dataset.nodeId + ' ' + r.dataset.role + ' '
                                      + r.querySelector('.health').textContent)};",
        vec![json!(leader.to_string())],
    )
    .await;
    println!(
        "2. members shown: {}; leader shown: {}",
        shown["rows"], shown["leader"]
    );

    // 3. A leadership transfer is seen.
    let t = Instant::now();
    cluster
        .transfer_leader(node)
        .unwrap_or_else(|e| panic!("expected leadership to move to node {node}: {e}"));
    assert!(
        wait_until(LEADER_TIMEOUT, || cluster.current_leader() == Some(node)),
        "expected the harness to see node {node} lead after the transfer"
    );
    let moved = wait_page(
        c,
        &format!("#leader to show node {node} after the transfer"),
        "const l = document.getElementById('leader');
         const row = document.querySelector('#members tbody tr[data-node-id=\"' + arguments[0] + '\"]');
         const evs = Array.from(document.querySelectorAll('#events li[data-kind=\"leader_change\"]'))
             .map((li) => li.textContent);
         return {done: l.dataset.leaderId === arguments[0] && l.textContent === arguments[0]
                       && !!row && row.dataset.role === 'leader'
                       && evs.some((e) => e.includes('-> ' + arguments[0])),
                 leader: l.dataset.leaderId, role: row && row.dataset.role, events: evs};",
        vec![json!(node.to_string())],
    )
    .await;
    println!(
        "3. leader {leader} -> {node}: shown by the console {} ms after the transfer call; \
         events: {}",
        t.elapsed().as_millis(),
        moved["events"]
    );

    // 4. A key written through Thrift shows in the data browser.
    let prefix = String::from_utf8(unique_prefix("console")).expect("a text prefix");
    let thrift_key = format!("{prefix}thrift");
    let mut kv = connect_buffered(cluster.thrift_endpoint(node));
    let r = kv.set_in(thrift_key.as_bytes(), b"written through Thrift", None);
    assert!(r.success, "expected setKey({thrift_key}) to succeed: {r:?}");
    open_page(c, "data").await;
    select(c, "#browse-mode", "prefix").await;
    select(c, "#browse-encoding", "text").await;
    type_into(c, "#browse-prefix", &prefix).await;
    let t = Instant::now();
    let deadline = Instant::now() + PAGE_WAIT;
    let row = loop {
        click(c, "#browse-go").await;
        let seen = wait_page(
            c,
            "the browse request to finish",
            "const s = document.getElementById('browse-status').textContent;
             const row = Array.from(document.querySelectorAll('#browse-results tbody tr[data-key-text]'))
                 .find((r) => r.dataset.keyText === arguments[0]);
             return {done: !document.getElementById('browse-go').disabled && s !== 'loading…',
                     status: s, found: !!row, hex: row ? row.dataset.keyHex : null,
                     value: row ? row.cells[1].textContent : null,
                     size: row ? row.cells[2].textContent : null};",
            vec![json!(thrift_key)],
        )
        .await;
        if seen["found"] == json!(true) {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "expected {thrift_key} in the data browser within {PAGE_WAIT:?}; it showed {seen}"
        );
        tokio::time::sleep(POLL).await;
    };
    let hex: String = thrift_key.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(row["hex"], json!(hex), "{row}");
    assert_eq!(row["value"], json!("written through Thrift"), "{row}");
    assert_eq!(row["size"], json!("22"), "{row}");
    println!(
        "4. {thrift_key} (written through Thrift) shown by the data browser after {} ms: {}",
        t.elapsed().as_millis(),
        row["status"]
    );

    // 5. A write from the console: refused without the credential, done with it.
    let console_key = format!("{prefix}console");
    let refused = console_put(c, &console_key, "written from the console").await;
    let text = &refused.text;
    assert_eq!(
        (refused.status.as_str(), refused.code.as_str()),
        ("error", "unauthorized"),
        "expected the write to be refused without a credential: {text}"
    );
    assert!(
        text.contains("credential"),
        "expected the refusal to mention the credential: {text}"
    );
    let missing = definite_get(&mut kv, console_key.as_bytes());
    assert!(
        !missing.found && missing.error.is_none(),
        "expected the refused write to have written nothing: {missing:?}"
    );
    println!(
        "5. without the credential: refused ({}) with \"{text}\"; nothing written (Thrift get: \
         not found)",
        refused.code
    );
    type_into(c, "#token-input", TOKEN).await;
    click(c, "#token-save").await;
    let saved = wait_page(
        c,
        "the token to be saved",
        "return {done: document.getElementById('token-state').textContent === 'saved',
                 stored: sessionStorage.getItem('dolmen.console.token') === arguments[0]};",
        vec![json!(TOKEN)],
    )
    .await;
    assert_eq!(
        saved["stored"],
        json!(true),
        "expected the token in sessionStorage"
    );
    let done = console_put(c, &console_key, "written from the console").await;
    let text = &done.text;
    assert_eq!(
        done.status, "ok",
        "expected the write to succeed with the token: {text}"
    );
    let version: u64 = text
        .strip_prefix("written at version ")
        .map(|v| v.replace(',', ""))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("expected \"written at version N\", got {text:?}"));
    let written = definite_get(&mut kv, console_key.as_bytes());
    assert!(
        written.found && written.value == b"written from the console",
        "expected the console's write to be readable through Thrift: {written:?}"
    );
    // The browse table on the page reloads after a write in its column family.
    wait_page(
        c,
        "the console's key in the browse table",
        "return {done: Array.from(document.querySelectorAll('#browse-results tbody tr[data-key-text]'))
                     .some((r) => r.dataset.keyText === arguments[0])};",
        vec![json!(console_key)],
    )
    .await;
    println!(
        "5. with the token: \"{text}\"; Thrift reads {:?} at {console_key}",
        String::from_utf8_lossy(&written.value)
    );
    assert!(version > 0);
    log.extend(browser_log(c).await);

    // 6. The charts receive data: under a write load, the commits rate reaches the page's
    // card (at least 3/s: steps 4 and 5 alone make at most one a second) and the throughput
    // chart draws the commits line above zero.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = Arc::clone(&writing);
        let addr = cluster.thrift_endpoint(node);
        let prefix = prefix.clone();
        std::thread::spawn(move || {
            let mut kv = connect_buffered(addr);
            let deadline = Instant::now() + PAGE_WAIT + Duration::from_secs(5);
            let mut n = 0u32;
            while writing.load(Ordering::Relaxed) && Instant::now() < deadline {
                let key = format!("{prefix}load/{n:05}");
                let r = kv.set_in(key.as_bytes(), b"x", None);
                assert!(
                    r.success,
                    "expected the load's setKey({key}) to succeed: {r:?}"
                );
                assert!(kv.get_value(key.as_bytes()).found, "expected {key} back");
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        })
    };
    open_page(c, "metrics").await;
    let t = Instant::now();
    // The commits line is the chart's second colour (#16a34a, app.js COLORS[1]); the plot is
    // the canvas less its margins (left 54, top 26, bottom 22 CSS pixels, app.js drawChart),
    // and a sample above zero draws the line above the bottom one.
    let chart = wait_page(
        c,
        "a commits rate on the metrics page and its line in the throughput chart",
        "const cv = document.getElementById('chart-throughput');
         const dpr = window.devicePixelRatio || 1;
         const w = cv.width, h = cv.height;
         let above = 0;
         if (w > 0 && h > 0) {
           // Read from a copy: reading the page's own canvas again and again makes the
           // browser warn about readbacks.
           const copy = document.createElement('canvas');
           copy.width = w; copy.height = h;
           const cx = copy.getContext('2d', {willReadFrequently: true});
           cx.drawImage(cv, 0, 0);
           const d = cx.getImageData(0, 0, w, h).data;
           const y0 = Math.ceil(26 * dpr), y1 = Math.floor((cv.clientHeight - 22) * dpr) - 3;
           for (let y = y0; y < y1; y++) for (let x = Math.ceil(56 * dpr); x < w; x++) {
             const i = (y * w + x) * 4;
             if (d[i + 3] > 200 && Math.abs(d[i] - 22) < 30 && Math.abs(d[i + 1] - 163) < 30
                 && Math.abs(d[i + 2] - 74) < 30) above++;
           }
         }
         const pts = Number(cv.dataset.points || 0);
         const commits = document.getElementById('now-commits').textContent;
         return {done: pts > 0 && above > 0 && Number(commits.replace(/,/g, '')) >= 3,
                 points: pts, commit_pixels: above, commits_now: commits,
                 reads_now: document.getElementById('now-reads').textContent,
                 commit_p99: document.getElementById('now-commit-p99').textContent,
                 others: ['chart-errors', 'chart-latency', 'chart-log-lag', 'chart-apply-lag']
                   .map((id) => id + ' ' + document.getElementById(id).dataset.points)};",
        vec![],
    )
    .await;
    writing.store(false, Ordering::Relaxed);
    let writes = writer.join().expect("the load thread");
    println!(
        "6. metrics page {} ms after it opened: {} commits/s, {} reads/s, commit p99 {}; \
         throughput chart {} points, commits line above zero ({} px); data-points of the \
         others: {}; load: {writes} setKey + get",
        t.elapsed().as_millis(),
        chart["commits_now"],
        chart["reads_now"],
        chart["commit_p99"],
        chart["points"],
        chart["commit_pixels"],
        chart["others"]
    );

    // 7. A screenshot of each page.
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("expected to create {}: {e}", dir.display()));
    let dir = dir.canonicalize().unwrap_or(dir);
    for page in PAGES {
        open_page(c, page).await;
        let ready = match page {
            "cluster" => {
                "return {done: document.querySelectorAll('#members tbody tr[data-node-id]').length === 3};"
            }
            "metrics" => {
                "return {done: ['chart-throughput', 'chart-errors', 'chart-latency']
                     .every((id) => document.getElementById(id).width > 0)};"
            }
            "replication" => {
                "return {done: Number(document.getElementById('chart-log-lag').dataset.points) > 0
                     && document.getElementById('chart-log-lag').width > 0,
                     self: document.getElementById('repl-self').textContent};"
            }
            "data" => {
                "return {done: document.querySelectorAll('#browse-results tbody tr[data-key-text]').length > 0};"
            }
            _ => {
                "const cfg = document.getElementById('config');
                 return {done: document.querySelectorAll('#build dd').length > 0
                         && cfg.querySelectorAll('.cfg-section').length > 0,
                         leaked: cfg.textContent.includes(arguments[0]),
                         masked: Array.from(cfg.querySelectorAll('tr[data-key=\"admin_token\"] td'))
                           .map((td) => td.textContent)};"
            }
        };
        let shown = wait_page(
            c,
            &format!("the {page} page to render"),
            ready,
            vec![json!(TOKEN)],
        )
        .await;
        if page == "node" {
            assert_eq!(
                shown["leaked"],
                json!(false),
                "expected the configuration shown to mask the admin token: {shown}"
            );
        }
        let png = c
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("expected a screenshot of the {page} page: {e}"));
        assert!(
            png.starts_with(b"\x89PNG"),
            "expected a PNG of the {page} page"
        );
        let file = dir.join(format!("console-{page}.png"));
        std::fs::write(&file, &png)
            .unwrap_or_else(|e| panic!("expected to write {}: {e}", file.display()));
        println!(
            "7. screenshot of the {page} page: {} ({} bytes)",
            file.display(),
            png.len()
        );
    }

    // 1 (end). Nothing in the browser's console but the refusal of step 5.
    log.extend(browser_log(c).await);
    let severe: Vec<&LogEntry> = log.iter().filter(|e| e.level == "SEVERE").collect();
    let expected = severe.iter().filter(|e| is_expected_refusal(e)).count();
    let unexpected: Vec<&&LogEntry> = severe.iter().filter(|e| !is_expected_refusal(e)).collect();
    let others: Vec<String> = log
        .iter()
        .filter(|e| e.level != "SEVERE")
        .map(|e| format!("{} {}", e.level, e.message))
        .collect();
    println!(
        "1. browser log: {} entries, {} SEVERE ({expected} the 401 of the refused write); \
         other entries: {others:?}",
        log.len(),
        severe.len()
    );
    assert!(
        unexpected.is_empty(),
        "expected no error in the browser's console, got:\n{}",
        unexpected
            .iter()
            .map(|e| format!("{} {}", e.level, e.message))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        expected >= 1,
        "expected the browser log to show the refused write's 401 (is the log read at all?): \
         {log:?}"
    );
}
