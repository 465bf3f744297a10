//! The HTTP server against slow and numerous clients (issue 13, item 11):
//! a connection that never finishes its headers is closed after
//! `[http] header_read_timeout`, and with more slow clients than
//! `max_connections`, `/health` is still answered once they are dropped.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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
