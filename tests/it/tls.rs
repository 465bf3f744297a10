//! The zuliprc's TLS settings against a Zulip behind a certificate of a
//! private CA ([`TlsProxy`]): `cert_bundle` naming it is trusted, the
//! built-in CAs are not, and `insecure = true` connects with a warning.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// A daemon whose zuliprc points at the fake through TLS, with `tls`
/// (zuliprc lines, where @BUNDLE@, @CERT@ and @KEY@ name the test CA, the test
/// certificate and its key) added.
async fn behind_tls(tls: &str) -> (TestApp, TlsProxy) {
    behind(tls, false).await
}

/// [`behind_tls`], the server asking for a client certificate when
/// `client_auth`.
async fn behind(tls: &str, client_auth: bool) -> (TestApp, TlsProxy) {
    let app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let target = app
        .fake
        .site()
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let proxy = match client_auth {
        true => TlsProxy::start_requiring_client_cert(target).await,
        false => TlsProxy::start(target).await,
    };
    let (cert, key) = write_client_identity(app.setup.dir.path());
    let bundle = app.setup.dir.path().join("ca.pem");
    std::fs::write(&bundle, TLS_TEST_CA).unwrap();
    write_secret(
        &app.setup.dir.path().join("zuliprc"),
        &format!(
            "[api]\nemail={}\nkey={}\nsite={}\n{}",
            app.fake.email(),
            app.fake.api_key(),
            proxy.site(),
            tls.replace("@BUNDLE@", &bundle.display().to_string())
                .replace("@CERT@", &cert.display().to_string())
                .replace("@KEY@", &key.display().to_string())
        ),
    );
    (app, proxy)
}

#[tokio::test]
async fn a_cert_bundle_naming_the_servers_ca_is_trusted() {
    let (mut app, _proxy) = behind_tls("cert_bundle = @BUNDLE@\n").await;
    let fake = app.fake.clone();
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    fake.send_channel_message(10, "u@example.com", "general", "t", "over TLS");
    assert!(
        eventually(WAIT, || async {
            count(&app.db, "SELECT count(*) FROM event_listeners_inbox").await == 1
        })
        .await
    );
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn without_the_bundle_a_private_cas_server_is_not_trusted() {
    let (mut app, proxy) = behind_tls("").await;
    let fake = app.fake.clone();
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { proxy.failed_handshakes() >= 1 }).await);
    assert!(fake.requests().is_empty(), "nothing reached Zulip");
    assert_eq!(app.health().await.body["status"], "starting");
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn client_cert_and_client_cert_key_are_presented_to_a_server_that_asks() {
    let tls = "cert_bundle = @BUNDLE@\nclient_cert = @CERT@\nclient_cert_key = @KEY@\n";
    let (mut app, proxy) = behind(tls, true).await;
    let fake = app.fake.clone();
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    app.stop().await.expect("clean stop");
    assert_eq!(proxy.failed_handshakes(), 0);

    // Without them, the server refuses the handshake.
    let (mut app, proxy) = behind("cert_bundle = @BUNDLE@\n", true).await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { proxy.failed_handshakes() >= 1 }).await);
    assert!(app.fake.requests().is_empty(), "nothing reached Zulip");
    app.stop().await.expect("clean stop");
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn insecure_connects_to_an_untrusted_server_and_warns_at_start() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (mut app, _proxy) = behind_tls("insecure = true\n").await;
    let fake = app.fake.clone();
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    app.stop().await.expect("clean stop");
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("WARN") && logs.contains("Insecure mode enabled"),
        "{logs}"
    );
}
