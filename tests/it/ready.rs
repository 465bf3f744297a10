//! `GET /ready`: 200 while every organization polls and the database takes
//! writes; 503 naming the database during a PostgreSQL outage, or the
//! organization whose key Zulip refused; guarded like `/health`.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{json, Value};
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::{FakeOptions, FakeZulip, Fault, FaultPlan};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(45);

/// The failing entries of a `/ready` body of `component`.
fn failing<'a>(ready: &'a Health, component: &str) -> Vec<&'a Value> {
    ready.body["failing"]
        .as_array()
        .expect("a list of failing components")
        .iter()
        .filter(|f| f["component"] == component)
        .collect()
}

async fn ready_once_polling(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async { app.ready().await.code == 200 }).await,
        "ready once the queue is polled: {:?}",
        app.ready().await
    );
    assert_eq!(
        app.ready().await.body,
        json!({"ready": true, "failing": []})
    );
    app.stop().await.expect("clean stop");
}

crate::support::both_backends!(#[tokio::test] ready_once_polling =>
    sqlite_ready_once_polling, postgres_ready_once_polling);

#[tokio::test]
async fn ready_needs_the_token_when_health_does() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let path = app.setup.dir.path().join("admin-tokens");
    let token = "ci-token-0123456789abcdef";
    std::fs::write(&path, format!("ci:{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    app.setup.config.http.admin_token_file = Some(path);
    app.setup.config.http.health_requires_token = true;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let url = format!("http://{}/ready", app.address());
    let client = reqwest::Client::new();
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert!(
        eventually(WAIT, || async {
            let r = client.get(&url).bearer_auth(token).send().await.unwrap();
            r.status().as_u16() == 200
        })
        .await,
        "with the token, /ready answers"
    );
    let scrape = app.metrics().await;
    assert_eq!(
        scrape.sample(
            "zulip_event_listeners_http_unauthorized_total",
            &[("route", "health")]
        ),
        Some(1.0),
        "the refusal is counted under health's route"
    );
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_postgres_outage_makes_the_daemon_unready_naming_the_database() {
    let mut app = TestApp::new(Backend::Postgres, FakeOptions::default(), "").await;
    app.db.migrate().await;
    let (target, _) = redirect_pg_url(&app.db.url, "127.0.0.1:1".parse().unwrap());
    let target = tokio::net::lookup_host(&target)
        .await
        .expect("resolve the PostgreSQL host")
        .next()
        .expect("an address for the PostgreSQL host");
    let proxy = TcpProxy::start(target).await;
    let (_, proxied_url) = redirect_pg_url(&app.db.url, proxy.addr());
    app.setup = setup(Some(&app.fake), &proxied_url, "");
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async { app.ready().await.code == 200 }).await,
        "ready through the proxy: {:?}",
        app.ready().await
    );

    // PostgreSQL goes away while messages arrive: their writes fail.
    proxy.cut();
    let fake = app.fake.clone();
    let mut sent = 0;
    let unready = eventually(WAIT, || {
        send(&fake, sent..sent + 5);
        sent += 5;
        async { app.ready().await.code == 503 }
    })
    .await;
    let ready = app.ready().await;
    assert!(unready, "unready during the outage: {ready:?}");
    assert_eq!(ready.body["ready"], false, "{ready:?}");
    let database = failing(&ready, "database");
    assert_eq!(database.len(), 1, "{ready:?}");
    assert_eq!(database[0]["name"], "postgres", "{ready:?}");
    assert!(
        failing(&ready, "organization").is_empty(),
        "intake still polls Zulip: {ready:?}"
    );

    proxy.restore();
    assert!(
        eventually(WAIT, || async { app.ready().await.code == 200 }).await,
        "ready again once the held batch is written: {:?}",
        app.ready().await
    );
    app.stop().await.expect("a clean stop after the outage");
}

#[tokio::test]
async fn a_refused_key_makes_the_daemon_unready_naming_its_organization() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let acme = app.fake.clone();
    let globex = FakeZulip::start(FakeOptions::default()).await;
    app.setup = setup_organizations(
        &[("acme", &acme, ""), ("globex", &globex, "")],
        &app.db.url,
        "",
    );
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async { app.ready().await.code == 200 }).await,
        "ready while both poll: {:?}",
        app.ready().await
    );

    globex.set_faults(FaultPlan {
        every: vec![(1, Fault::Unauthorized)],
        only_paths: None,
    });
    assert!(
        eventually(WAIT, || async { app.ready().await.code == 503 }).await,
        "unready once globex's key is refused"
    );
    let ready = app.ready().await;
    let orgs = failing(&ready, "organization");
    assert_eq!(orgs.len(), 1, "only globex fails: {ready:?}");
    assert_eq!(orgs[0]["name"], "globex", "{ready:?}");
    let why = orgs[0]["why"].as_str().unwrap_or_default();
    assert!(why.starts_with("intake stopped"), "{why}");
    assert!(why.contains("401"), "{why}");
    assert!(!app.is_finished(), "acme goes on: unready is not stopped");
    app.stop().await.expect("clean stop");
}
