//! A PostgreSQL server the daemon cannot use says why (issue 13, item 13):
//! "connection refused" for a closed port, "too many connections" for a
//! full server or role, never only that the pool timed out, at start and
//! in the outage logs mid-run; and each error's text is printed once.

use zulip_event_listeners::store::StoreOptions;

use crate::support::*;

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    port
}

/// Runs `migrate` and `run` on `url`; returns each one's stderr, after
/// checking that it failed with exit code 4 (the database is unavailable).
async fn start_on(url: &str) -> Vec<String> {
    let s = setup(None, url, "");
    let cfg = s.config_path.display().to_string();
    let mut errors = Vec::new();
    for command in ["migrate", "run"] {
        let out = zel_async(args(&cfg, &[command])).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(4), "{command}: {stderr}");
        errors.push(stderr);
    }
    errors
}

/// `text` says `what` (ignoring case) exactly once and never that the pool
/// timed out.
fn says_once(text: &str, what: &str) {
    let lower = text.to_lowercase();
    assert_eq!(lower.matches(what).count(), 1, "says {what:?} once: {text}");
    assert!(!lower.contains("pool timed out"), "{text}");
}

#[tokio::test]
async fn a_closed_postgres_port_says_connection_refused_at_start() {
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    for stderr in start_on(&url).await {
        says_once(&stderr, "connection refused");
    }
}

#[tokio::test]
async fn a_role_over_its_connection_limit_says_too_many_connections_at_start() {
    let role = FullRole::new().await;
    for stderr in start_on(&role.url).await {
        says_once(&stderr, "too many connections for role");
    }
}

/// Mid-run, once the server is gone, the pool only times out; the error
/// the outage logs write (`Store::explain`) says the connection is refused.
#[tokio::test]
async fn a_postgres_server_gone_mid_run_is_explained_as_connection_refused() {
    let db = TestDb::new(Backend::Postgres).await;
    let (target, _) = redirect_pg_url(&db.url, "127.0.0.1:1".parse().expect("an address"));
    let target = tokio::net::lookup_host(&target)
        .await
        .expect("resolve the PostgreSQL host")
        .next()
        .expect("an address for the PostgreSQL host");
    let proxy = TcpProxy::start(target).await;
    let (_, via_proxy) = redirect_pg_url(&db.url, proxy.addr());
    let store = open_migrated(&via_proxy, &StoreOptions::default()).await;
    store.ping().await.expect("reachable through the proxy");

    // Dropping the proxy closes its port: reconnecting is refused.
    drop(proxy);
    let mut said = Vec::new();
    for _ in 0..3 {
        // The first tries may still find the pool's closed connections.
        let e = store.ping().await.expect_err("the server is gone");
        let text = store.explain(e).await.to_string();
        said.push(text.clone());
        if text.to_lowercase().contains("connection refused") {
            break;
        }
    }
    let last = said.last().expect("one try at least");
    says_once(last, "connection refused");
    assert!(
        said.iter().all(|t| !t.contains("pool timed out")),
        "{said:?}"
    );
}
