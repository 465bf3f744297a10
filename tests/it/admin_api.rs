//! The admin HTTP API (issue 14, item 5): absent without a token file; 401
//! without or with a wrong token (counted, not audited); with a right
//! token, a disable stops the listener in the running daemon and an enable
//! starts it again, a replay re-runs the dead letters, dead letters are
//! listed; oversize bodies are refused with 413; `/metrics` can require the
//! token; a token file open to others stops the start; with several
//! organizations, a replay's `org` picks whose events run.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use zulip_event_listeners::app::{AppError, RunOptions};
use zulip_event_listeners::listeners::Registry;
use zulip_event_listeners::store::RunRecord;

use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);
const CI: &str = "ci-token-0123456789abcdef";
const ALICE: &str = "alice-token-0123456789abcdef";

/// A token file (mode 600) naming `ci` and `alice`, in `app`'s directory,
/// set as `[http] admin_token_file`.
fn with_tokens(app: &mut TestApp) -> PathBuf {
    let path = app.setup.dir.path().join("admin-tokens");
    std::fs::write(&path, format!("# operators\nci:{CI}\nalice: {ALICE}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    app.setup.config.http.admin_token_file = Some(path.clone());
    path
}

/// One call: the status and the JSON body (`Null` when there is none).
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{}{path}", app.address());
    let client = reqwest::Client::new();
    let mut request = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.expect("an answer");
    let code = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn counting_app_config() -> &'static str {
    "[listeners]\nenabled = [\"message_logger\", \"counting\"]"
}

#[tokio::test]
async fn without_a_token_file_the_admin_routes_are_absent() {
    let mut app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        counting_app_config(),
    )
    .await;
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    for (method, path) in [
        ("GET", "/admin/listeners"),
        ("POST", "/admin/listeners/counting/disable"),
        ("POST", "/admin/listeners/counting/replay"),
        ("GET", "/admin/deadletters"),
    ] {
        let (code, _) = call(&app, method, path, Some(CI), None).await;
        assert_eq!(code, 404, "{method} {path}");
    }
    assert!(
        eventually(WAIT, || async { app.health().await.code == 200 }).await,
        "/health stays open"
    );
    app.stop().await.expect("clean stop");
}

async fn the_right_token_switches_a_running_listener_and_others_are_refused(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), counting_app_config()).await;
    with_tokens(&mut app);
    app.db.migrate().await;
    let (registry, counter) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    // No token, a wrong one, another scheme: 401, and nothing changes.
    for token in [
        None,
        Some("not-a-token-of-the-file"),
        Some(&CI[..CI.len() - 1]),
    ] {
        let (code, body) = call(
            &app,
            "POST",
            "/admin/listeners/counting/disable",
            token,
            None,
        )
        .await;
        assert_eq!(code, 401, "{token:?}: {body}");
    }
    let refused = reqwest::Client::new()
        .get(format!("http://{}/admin/listeners", app.address()))
        .basic_auth("ci", Some(CI))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(
        refused
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer")
    );
    let scrape = app.metrics().await;
    assert_eq!(
        scrape.sample(
            "zulip_event_listeners_http_unauthorized_total",
            &[("route", "admin")]
        ),
        Some(4.0)
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_listenerstate")
            .await,
        0
    );

    // The right token: listed, then disabled in the running daemon.
    let (code, body) = call(&app, "GET", "/admin/listeners", Some(ALICE), None).await;
    assert_eq!(code, 200, "{body}");
    let names: Vec<&str> = body["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["counting", "message_logger"]);
    assert_eq!(body["listeners"][0]["enabled"], json!(true));

    let (code, body) = call(
        &app,
        "POST",
        "/admin/listeners/counting/disable",
        Some(CI),
        Some(json!({"reason": "too noisy"})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["by"], json!("token:ci"));
    let before = counter.load(Ordering::SeqCst);
    fake.send_channel_message(10, "user10@example.com", "general", "t", "while disabled");
    assert!(
        eventually(WAIT, || async {
            db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'counting' AND error LIKE 'skipped: the listener is disabled (too noisy)%'").await == 1
        })
        .await,
        "the running daemon skips the disabled listener at once"
    );
    assert_eq!(counter.load(Ordering::SeqCst), before, "it did not run");
    let (_, body) = call(&app, "GET", "/admin/listeners", Some(CI), None).await;
    assert_eq!(body["listeners"][0]["enabled"], json!(false));
    assert_eq!(body["listeners"][0]["disabled_now"], json!("too noisy"));
    assert_eq!(body["listeners"][0]["changed_by"], json!("token:ci"));

    // Enabled again: the next event runs it.
    let (code, _) = call(
        &app,
        "POST",
        "/admin/listeners/counting/enable",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(code, 200);
    fake.send_channel_message(10, "user10@example.com", "general", "t", "enabled again");
    assert!(
        eventually(WAIT, || async {
            counter.load(Ordering::SeqCst) == before + 1
        })
        .await
    );

    // An unknown listener: 404 naming those there are (and audited as failed).
    let (code, body) = call(
        &app,
        "POST",
        "/admin/listeners/nope/disable",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(code, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("counting, message_logger"),
        "{body}"
    );

    assert_eq!(
        db.text_pairs("SELECT actor, action || ' ' || coalesce(target, '') || ' ' || outcome FROM event_listeners_audit ORDER BY id").await,
        [
            ("token:alice", "list-listeners /admin/listeners ok"),
            ("token:ci", "disable counting ok"),
            ("token:ci", "list-listeners /admin/listeners ok"),
            ("token:ci", "enable counting ok"),
            ("token:ci", "disable nope failed"),
        ]
        .map(|(a, b)| (a.to_owned(), Some(b.to_owned())))
        .to_vec(),
        "every authenticated call is one row, by token name; refused calls none"
    );
    app.stop().await.expect("clean stop");
}

both_backends!(the_right_token_switches_a_running_listener_and_others_are_refused =>
    the_right_token_switches_a_running_listener_on_sqlite,
    the_right_token_switches_a_running_listener_on_postgres);

async fn a_replay_over_the_api_reruns_the_dead_letters(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    with_tokens(&mut app);
    let db = app.db.clone();
    let s = db.store().await;
    let ids = append_messages(&s, "default", 1, 1).await;
    let failed = RunRecord {
        inbox_id: ids[0],
        listener: "message_logger".into(),
        event_type: "message".into(),
        success: false,
        attempts: 2,
        error: Some("the disk was full".to_owned()),
        duration: Duration::from_millis(2),
        finished_at: Utc::now(),
        records: vec![],
        dead_letter: dead_letter_of(
            zulip_event_listeners::store::ErrorClass::Transient,
            Utc::now(),
        ),
        fallback: Default::default(),
    };
    s.record("default", &[failed], Some(ids[0])).await.unwrap();
    app.start(Registry::builtin(), RunOptions::default()).await;

    let (code, body) = call(&app, "GET", "/admin/deadletters?limit=10", Some(CI), None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["dead_letters"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["dead_letters"][0]["listener"], json!("message_logger"));
    assert_eq!(body["dead_letters"][0]["error"], json!("the disk was full"));
    let (code, _) = call(&app, "GET", "/admin/deadletters?limit=0", Some(CI), None).await;
    assert_eq!(code, 400);

    let (code, body) = call(
        &app,
        "POST",
        "/admin/listeners/message_logger/replay",
        Some(CI),
        Some(json!({"event": ids[0]})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["replayed"].clone(), body["succeeded"].clone()),
        (json!(1), json!(1)),
        "{body}"
    );
    assert_eq!(body["outcomes"][0]["attempts"], json!(3));
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        1,
        "the replayed run's records are committed"
    );
    let (_, body) = call(&app, "GET", "/admin/deadletters", Some(CI), None).await;
    assert_eq!(
        body["dead_letters"],
        json!([]),
        "the dead letter is settled"
    );

    let (code, body) = call(
        &app,
        "POST",
        "/admin/listeners/message_logger/replay",
        Some(CI),
        Some(json!({"event": 999_999})),
    )
    .await;
    assert_eq!(code, 404, "{body}");
    let (code, _) = call(
        &app,
        "POST",
        "/admin/listeners/message_logger/replay",
        Some(CI),
        Some(json!({"since": "yesterday"})),
    )
    .await;
    assert_eq!(code, 400, "a since that is not RFC 3339");
    assert_eq!(
        db.text_pairs("SELECT action, outcome FROM event_listeners_audit WHERE actor = 'token:ci' ORDER BY id").await,
        [("list-deadletters", "ok"), ("list-deadletters", "failed"), ("replay", "ok"), ("list-deadletters", "ok"), ("replay", "failed"), ("replay", "failed")]
            .map(|(a, o)| (a.to_owned(), Some(o.to_owned())))
            .to_vec()
    );
    app.stop().await.expect("clean stop");
}

/// `message_logger`'s run on `inbox_id`, dead-lettered.
fn dead_letter(inbox_id: i64) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: "message_logger".into(),
        event_type: "message".into(),
        success: false,
        attempts: 2,
        error: Some("down".to_owned()),
        duration: Duration::from_millis(2),
        finished_at: Utc::now(),
        records: vec![],
        dead_letter: dead_letter_of(
            zulip_event_listeners::store::ErrorClass::Transient,
            Utc::now(),
        ),
        fallback: Default::default(),
    }
}

async fn a_replay_over_the_api_takes_the_organization_of_its_body(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    let acme = app.fake.clone();
    let globex = FakeZulip::start(FakeOptions::default()).await;
    app.setup = setup_organizations(
        &[("acme", &acme, ""), ("globex", &globex, "")],
        &app.db.url,
        "",
    );
    with_tokens(&mut app);
    let db = app.db.clone();
    let s = db.store().await;
    let a = append_messages(&s, "acme", 1, 1).await[0];
    let g = append_messages(&s, "globex", 1, 1).await[0];
    s.record("acme", &[dead_letter(a)], Some(a)).await.unwrap();
    s.record("globex", &[dead_letter(g)], Some(g))
        .await
        .unwrap();
    app.start(Registry::builtin(), RunOptions::default()).await;
    let path = "/admin/listeners/message_logger/replay";
    let logged = |org: &str| {
        format!("SELECT count(*) FROM event_listeners_messagelog WHERE instance = '{org}'")
    };

    let (code, body) = call(
        &app,
        "POST",
        path,
        Some(CI),
        Some(json!({"org": "initech"})),
    )
    .await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body.to_string()
            .contains("the organizations are: acme, globex"),
        "{body}"
    );

    let (code, body) = call(&app, "POST", path, Some(CI), Some(json!({"org": "globex"}))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["replayed"], json!(1), "{body}");
    assert_eq!(body["outcomes"][0]["inbox_id"], json!(g), "{body}");
    assert_eq!(db.scalar(&logged("globex")).await, 1);
    assert_eq!(db.scalar(&logged("acme")).await, 0, "acme's letter waits");

    let (code, body) = call(&app, "POST", path, Some(CI), None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["outcomes"][0]["inbox_id"],
        json!(a),
        "the first organization's: {body}"
    );
    assert_eq!(db.scalar(&logged("acme")).await, 1);
    app.stop().await.expect("clean stop");
}

both_backends!(a_replay_over_the_api_takes_the_organization_of_its_body =>
    a_replay_over_the_api_takes_the_organization_of_its_body_on_sqlite,
    a_replay_over_the_api_takes_the_organization_of_its_body_on_postgres);

both_backends!(a_replay_over_the_api_reruns_the_dead_letters =>
    a_replay_over_the_api_reruns_the_dead_letters_on_sqlite,
    a_replay_over_the_api_reruns_the_dead_letters_on_postgres);

#[tokio::test]
async fn an_oversize_body_is_refused_with_413_and_changes_nothing() {
    let mut app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        counting_app_config(),
    )
    .await;
    with_tokens(&mut app);
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    let reason = "x".repeat(100 * 1024);
    let (code, body) = call(
        &app,
        "POST",
        "/admin/listeners/counting/disable",
        Some(CI),
        Some(json!({ "reason": reason })),
    )
    .await;
    assert_eq!(code, 413, "{body}");
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM event_listeners_listenerstate")
            .await,
        0
    );
    let (code, _) = call(
        &app,
        "POST",
        "/admin/listeners/counting/disable",
        Some(CI),
        Some(json!({"reason": "ok", "extra": 1})),
    )
    .await;
    assert_eq!(code, 400, "unknown fields are refused");
    assert!(eventually(WAIT, || async { app.health().await.code == 200 }).await);
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn metrics_can_require_the_token_while_health_stays_open() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    with_tokens(&mut app);
    app.setup.config.http.metrics_requires_token = true;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (code, _) = call(&app, "GET", "/metrics", None, None).await;
    assert_eq!(code, 401);
    let url = format!("http://{}/metrics", app.address());
    let ok = reqwest::Client::new()
        .get(url)
        .bearer_auth(CI)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok
        .text()
        .await
        .unwrap()
        .contains("zulip_event_listeners_http_unauthorized_total{route=\"metrics\"} 1"));
    assert!(eventually(WAIT, || async { app.health().await.code == 200 }).await);
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_token_file_open_to_others_stops_the_start_naming_the_chmod() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let path = with_tokens(&mut app);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = app
        .try_start(Registry::builtin(), RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::AdminTokens(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("chmod 600 {}", path.display())),
        "{text}"
    );
    assert!(!text.contains(CI), "{text}");
}
