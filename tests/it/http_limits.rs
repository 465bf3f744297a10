//! The HTTP server against slow and numerous clients (issue 13, item 11;
//! issue 14, items 5 and 7): a connection that never finishes its headers
//! is closed after `[http] header_read_timeout`; with more slow clients
//! than `max_connections`, `/health` is still answered once they are
//! dropped; and 2,000 of them do not hold up intake.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

#[tokio::test]
async fn slow_clients_are_closed_and_health_keeps_answering() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    app.setup.config.http.header_read_timeout = Duration::from_secs(1);
    app.setup.config.http.max_connections = 4;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let addr = app.address();

    // Three times the cap, each stopping in the middle of its headers.
    let mut slow = Vec::new();
    for _ in 0..12 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // Each is closed by the server (accepted in turn as others close),
    // without an answer, well before a minute.
    for mut s in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a slow client is disconnected");
        assert!(
            !String::from_utf8_lossy(&buf).contains("200 OK"),
            "no answer to unfinished headers"
        );
    }
    let health = app.health().await;
    assert_eq!(health.code, 200, "{:?}", health.body);
    app.stop().await.expect("clean stop");
}

/// Slow clients at once, each stopping in its headers.
const SLOW_CLIENTS: usize = 2_000;
/// Messages sent while they hold on.
const MESSAGES: i64 = 10_000;
const WAIT: Duration = Duration::from_secs(120);

/// Issue 14, items 5 and 7: 2,000 slowloris clients on the HTTP port (30
/// times `max_connections`), each trickling its headers and connecting
/// again when closed, for as long as 10,000 messages take to flow. Intake
/// never waits on them: every message is stored and each (event,
/// listener) run recorded exactly once while the flood goes on; the
/// server closes the slow ones at their header timeout (those past the
/// kernel's backlog may be reset by the kernel, never reaching the
/// daemon), none gets an answer, and once they leave `/health` answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slow_clients_do_not_hold_up_ten_thousand_events() {
    raise_descriptor_limit(SLOW_CLIENTS as u64 + 2_048);
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    app.setup.config.http.header_read_timeout = Duration::from_millis(250);
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (fake, db, addr) = (app.fake.clone(), app.db.clone(), app.address());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    let stop = CancellationToken::new();
    let clients: Vec<_> = (0..SLOW_CLIENTS)
        .map(|i| tokio::spawn(slow_client(addr, i, stop.clone())))
        .collect();
    // The messages go out in bursts while the clients connect and trickle.
    for burst in 0..20 {
        for i in 0..MESSAGES / 20 {
            let n = burst * (MESSAGES / 20) + i;
            let sender = 10 + n % 5;
            fake.send_channel_message(
                sender,
                &format!("user{sender}@example.com"),
                "general",
                &format!("topic {}", n % 7),
                &format!("hello {n}"),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == MESSAGES * 2
        })
        .await,
        "every run is recorded while the slow clients hold on"
    );
    let queue = fake.queue_ids().pop().expect("one queue");
    assert!(
        eventually(WAIT, || async { fake.pending(&queue) == Some(0) }).await,
        "every event is acknowledged"
    );
    let still_on = clients.iter().filter(|c| !c.is_finished()).count();
    assert_eq!(still_on, SLOW_CLIENTS, "the flood went on through intake");

    stop.cancel();
    let mut total = SlowReport::default();
    for c in clients {
        total.add(c.await.unwrap());
    }
    assert_eq!(
        total.answered, 0,
        "no answer to unfinished headers: {total:?}"
    );
    assert!(
        total.closed_by_server > 0,
        "the header timeout closes slow clients: {total:?}"
    );
    let health = app.health().await;
    assert_eq!(health.code, 200, "{:?}", health.body);
    app.stop().await.expect("clean stop");

    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        MESSAGES,
        "every message is stored"
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT message_id) FROM event_listeners_inbox")
            .await,
        MESSAGES,
        "no message is stored twice"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM (SELECT inbox_id, listener_name FROM event_listeners_eventlog GROUP BY inbox_id, listener_name HAVING count(*) <> 1) d").await,
        0,
        "each (event, listener) has exactly one recorded run"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE NOT success")
            .await,
        0
    );
}

/// What one slow client saw, over all its connections.
#[derive(Debug, Default)]
struct SlowReport {
    connections: u64,
    /// Closed by the server (end of stream).
    closed_by_server: u64,
    /// Reset (by the daemon, or by the kernel past the backlog).
    reset: u64,
    /// Connections that got a status line.
    answered: u64,
}

impl SlowReport {
    fn add(&mut self, o: SlowReport) {
        self.connections += o.connections;
        self.closed_by_server += o.closed_by_server;
        self.reset += o.reset;
        self.answered += o.answered;
    }
}

/// Until `stop`: connects, sends the start of a request, then one more
/// header byte every 100 ms (never the blank line that ends the headers)
/// until the connection is closed, and connects again after 100 ms.
async fn slow_client(addr: std::net::SocketAddr, i: usize, stop: CancellationToken) -> SlowReport {
    let mut report = SlowReport::default();
    while !stop.is_cancelled() {
        // A connection past the server's backlog waits in the kernel's SYN
        // retries until the server accepts more.
        let connect = tokio::select! {
            _ = stop.cancelled() => break,
            c = TcpStream::connect(addr) => c,
        };
        let Ok(mut s) = connect else {
            report.reset += 1;
            pause(&stop).await;
            continue;
        };
        report.connections += 1;
        let head = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ");
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        let mut started = false;
        let reset = loop {
            tokio::select! {
                _ = stop.cancelled() => break false,
                read = s.read(&mut buf) => match read {
                    Ok(0) => {
                        report.closed_by_server += 1;
                        break false;
                    }
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => break true,
                },
                _ = tick.tick() => {
                    let bytes = if started { b"a" } else { head.as_bytes() };
                    started = true;
                    if s.write_all(bytes).await.is_err() {
                        break true;
                    }
                }
            }
        };
        report.reset += u64::from(reset);
        report.answered += u64::from(got.starts_with(b"HTTP/"));
        pause(&stop).await;
    }
    report
}

/// A tenth of a second before connecting again (or until `stop`).
async fn pause(stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
}

/// Raises this process's soft limit on open descriptors to at least
/// `wanted` (within the hard limit): the slow clients are sockets of the
/// test process, beside the daemon's own.
fn raise_descriptor_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= wanted,
        "the hard limit on open files ({}) is below the {wanted} this test needs: raise `ulimit -Hn`",
        limit.rlim_max
    );
}
