//! The tap (issue 15, item 1): `GET /admin/tap` and the `tap` subcommand
//! stream the events entering dispatch and each run's outcome, live;
//! redacted unless `--show-content` and `[http] tap_show_content` allow
//! it; filtered by listener, type and channel; `--limit` exits; a tap
//! that never reads loses tap lines (counted), never events; the admin
//! token is required when there are tokens.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(45);
const TOKEN: &str = "tap-token-0123456789abcdef";
const SECRET: &str = "the launch code is 0000";
const TOPIC: &str = "hush hush";

/// A running daemon (SQLite) with the default listeners.
async fn started(tweak: impl FnOnce(&mut TestApp)) -> TestApp {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    app.db.migrate().await;
    tweak(&mut app);
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async { app.ready().await.code == 200 }).await,
        "the daemon polls its queue"
    );
    app
}

/// A token file (mode 600) set as `[http] admin_token_file`.
fn with_token(app: &mut TestApp) -> PathBuf {
    let path = app.setup.dir.path().join("admin-tokens");
    std::fs::write(&path, format!("ops:{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    app.setup.config.http.admin_token_file = Some(path.clone());
    path
}

/// A configuration file for the `tap` subcommand: the running daemon's
/// address, and `extra` `[http]` keys.
fn cli_config(app: &TestApp, extra: &str) -> PathBuf {
    let path = app.setup.dir.path().join("tap.toml");
    std::fs::write(
        &path,
        format!("[http]\nbind = \"{}\"\n{extra}", app.address()),
    )
    .unwrap();
    path
}

/// An open `GET /admin/tap` stream, read line by line.
struct Tap {
    response: reqwest::Response,
    buffer: String,
}

impl Tap {
    async fn open(app: &TestApp, query: &str, token: Option<&str>) -> reqwest::Response {
        let url = format!("http://{}/admin/tap{query}", app.address());
        let mut request = reqwest::Client::new().get(url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send().await.expect("an answer")
    }

    async fn new(app: &TestApp, query: &str) -> Tap {
        let response = Tap::open(app, query, None).await;
        assert_eq!(response.status().as_u16(), 200);
        Tap {
            response,
            buffer: String::new(),
        }
    }

    /// The next line, parsed; `None` at the end of the stream.
    async fn line(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find('\n') {
                let line: String = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_str(&line).expect("a JSON line"));
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("a line in time")
                .expect("the stream goes on")?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Lines until one event line and one outcome line of each default
    /// listener have come for inbox event `inbox_id`.
    async fn lines_of_one_event(&mut self) -> Vec<Value> {
        let mut lines = Vec::new();
        let done = |lines: &Vec<Value>| {
            let of = |kind: &str| lines.iter().filter(|l| l["kind"] == kind).count();
            of("event") >= 1 && of("outcome") >= 2
        };
        while !done(&lines) {
            lines.push(self.line().await.expect("a line"));
        }
        lines
    }
}

fn send_secret(app: &TestApp) {
    app.fake
        .send_channel_message(10, "ann@example.com", "general", TOPIC, SECRET);
}

#[tokio::test]
async fn the_tap_shows_events_and_outcomes_live_with_content_redacted() {
    let mut app = started(|_| {}).await;
    let mut tap = Tap::new(&app, "").await;
    send_secret(&app);
    let lines = tap.lines_of_one_event().await;
    let event = lines.iter().find(|l| l["kind"] == "event").unwrap();
    assert_eq!(event["type"], "message");
    assert_eq!(event["channel"], "general");
    assert!(event["inbox_id"].as_i64().unwrap() > 0, "{event}");
    let mut routed: Vec<&str> = event["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    routed.sort();
    assert_eq!(routed, ["message_logger", "user_activity_tracker"]);
    for outcome in lines.iter().filter(|l| l["kind"] == "outcome") {
        assert_eq!(outcome["success"], true, "{outcome}");
        assert_eq!(outcome["attempts"], 1, "{outcome}");
        assert_eq!(outcome["inbox_id"], event["inbox_id"], "{outcome}");
        assert_eq!(outcome["event_id"], event["event_id"], "{outcome}");
        assert!(outcome["duration_ms"].as_f64().is_some(), "{outcome}");
    }
    let text = serde_json::to_string(&lines).unwrap();
    for hidden in [SECRET, TOPIC, "ann@example.com"] {
        assert!(!text.contains(hidden), "{hidden} shown: {text}");
    }
    assert!(text.contains("[redacted: "), "{text}");
    app.stop().await.expect("a clean stop, the tap still open");
    assert!(
        tap.line().await.is_none(),
        "the stream ends with the daemon"
    );
}

#[tokio::test]
async fn show_content_is_refused_unless_the_config_allows_it() {
    let mut app = started(|_| {}).await;
    let refused = Tap::open(&app, "?show_content=true", None).await;
    assert_eq!(refused.status().as_u16(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("tap_show_content"), "{body}");
    let config = cli_config(&app, "");
    let out = zel_async(args(config.to_str().unwrap(), &["tap", "--show-content"])).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tap_show_content = true"), "{stderr}");
    app.stop().await.expect("clean stop");

    let mut app = started(|a| a.setup.config.http.tap_show_content = true).await;
    let mut tap = Tap::new(&app, "?show_content=true").await;
    send_secret(&app);
    let text = serde_json::to_string(&tap.lines_of_one_event().await).unwrap();
    assert!(text.contains(SECRET) && text.contains(TOPIC), "{text}");
    let mut redacted = Tap::new(&app, "").await;
    send_secret(&app);
    let text = serde_json::to_string(&redacted.lines_of_one_event().await).unwrap();
    assert!(!text.contains(SECRET), "allowed is not asked: {text}");
    app.stop().await.expect("clean stop");
}

/// Runs `tap` with `rest` on `config` while messages keep arriving, until
/// it exits; returns its exit code and stdout lines.
async fn tap_cli_under_traffic(app: &TestApp, config: &Path, rest: &[&str]) -> (i32, Vec<Value>) {
    let mut child = Command::new(bin())
        .args(["--config", config.to_str().unwrap(), "tap"])
        .args(rest)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tap");
    let mut i = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(i < 400, "tap did not exit");
        let channel = ["general", "random"][i % 2];
        app.fake
            .send_channel_message(10, "ann@example.com", channel, "t", "hi");
        react(&app.fake, 10);
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success() || !err.is_empty(), "{err}");
    let lines = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (status.code().unwrap_or(-1), lines)
}

#[tokio::test]
async fn the_cli_filters_by_listener_type_and_channel_and_exits_after_the_limit() {
    let mut app = started(|_| {}).await;
    let config = cli_config(&app, "");
    let filters = [
        "--listener",
        "message_logger",
        "--type",
        "message",
        "--channel",
        "general",
        "--limit",
        "4",
    ];
    let (code, lines) = tap_cli_under_traffic(&app, &config, &filters).await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines.len(), 4, "{lines:?}");
    for line in &lines {
        assert_eq!(line["type"], "message", "{line}");
        assert_eq!(line["channel"], "general", "{line}");
        match line["kind"].as_str() {
            Some("outcome") => assert_eq!(line["listener"], "message_logger", "{line}"),
            Some("event") => assert!(
                line["listeners"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l == "message_logger"),
                "{line}"
            ),
            _ => panic!("an event or outcome line: {line}"),
        }
    }
    assert!(lines.iter().any(|l| l["kind"] == "event"), "{lines:?}");
    assert!(lines.iter().any(|l| l["kind"] == "outcome"), "{lines:?}");

    let (code, lines) =
        tap_cli_under_traffic(&app, &config, &["--type", "reaction", "--limit", "2"]).await;
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l["type"] == "reaction"), "{lines:?}");
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_cli_says_so_when_the_daemon_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("tap.toml");
    std::fs::write(&config, format!("[http]\nbind = \"127.0.0.1:{port}\"\n")).unwrap();
    let out = zel_async(args(config.to_str().unwrap(), &["tap"])).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the daemon") && stderr.contains("is it running?"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_tap_that_never_reads_loses_tap_lines_never_events() {
    const MESSAGES: usize = 5000;
    let mut app = started(|_| {}).await;
    // A client that asks for the tap and then reads nothing, through a
    // small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(app.address()).await.unwrap();
    stalled
        .write_all(b"GET /admin/tap HTTP/1.1\r\nHost: tap\r\n\r\n")
        .await
        .unwrap();
    // Its headers come once it is subscribed; after them it reads nothing.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(WAIT, stalled.read_exact(&mut byte))
            .await
            .expect("the tap's headers in time")
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    send(&app.fake, 0..MESSAGES);
    let all_logged = || async {
        count(&app.db, "SELECT count(*) FROM event_listeners_eventlog").await == 2 * MESSAGES as i64
    };
    assert!(
        eventually(Duration::from_secs(180), all_logged).await,
        "every event ran for both listeners, the tap stalled: {} rows",
        count(&app.db, "SELECT count(*) FROM event_listeners_eventlog").await
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM event_listeners_inbox").await,
        MESSAGES as i64,
        "every event stored"
    );
    let dropped = app
        .metrics()
        .await
        .first("zulip_event_listeners_tap_lines_dropped_total")
        .unwrap_or(0.0);
    assert!(dropped > 0.0, "the stalled tap's lines were dropped");
    eprintln!("{MESSAGES} messages: {dropped} tap lines dropped");
    drop(stalled);
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_tap_needs_the_admin_token_when_tokens_are_configured() {
    let mut token_file = PathBuf::new();
    let mut app = started(|a| token_file = with_token(a)).await;
    let refused = Tap::open(&app, "", None).await;
    assert_eq!(refused.status().as_u16(), 401);
    let wrong = Tap::open(&app, "", Some("not-the-token-0123456789")).await;
    assert_eq!(wrong.status().as_u16(), 401);
    let accepted = Tap::open(&app, "?limit=1", Some(TOKEN)).await;
    assert_eq!(accepted.status().as_u16(), 200);
    drop(accepted);

    let without = cli_config(&app, "");
    let (code, _) = tap_cli_under_traffic(&app, &without, &["--limit", "1"]).await;
    assert_eq!(code, 1, "no token: refused");
    let with = cli_config(
        &app,
        &format!("admin_token_file = \"{}\"\n", token_file.display()),
    );
    let (code, lines) = tap_cli_under_traffic(&app, &with, &["--limit", "1"]).await;
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 1, "{lines:?}");
    app.stop().await.expect("clean stop");
}
