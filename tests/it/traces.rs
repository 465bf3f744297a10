//! Traces over OTLP: the daemon binary with `[telemetry] otlp_endpoint`
//! sends each event's trace — the `event` root, a `listener attempt` child
//! per try and a `reply send` child per reply — to a fake collector that
//! decodes them with the OpenTelemetry project's protobuf types; without
//! the key it sends nothing, even with the OTel SDK's environment set.

use std::process::Child;
use std::time::Duration;

use crate::replies::RESPONDER;
use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// The responder `ops` and `retrying`, a command that asks to be tried
/// again (exit 75) once, then is dead-lettered.
fn listeners() -> String {
    RESPONDER.replace(r#"enabled = ["ops"]"#, r#"enabled = ["ops", "retrying"]"#)
        + r#"
[listeners.retrying]
kind = "exec"
command = ["sh", "-c", "exit 75"]
retry.max_attempts = 2
retry.initial_delay = 0.05
"#
}

async fn spawned(extra: &str, env: &[(&str, &str)]) -> (TestApp, Child) {
    let app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        &format!("{}{extra}", listeners()),
    )
    .await;
    app.db.migrate().await;
    let log = std::fs::File::create(app.setup.dir.path().join("stderr.log")).expect("a log");
    let child = daemon_command(&app.setup.config_path)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stderr(log)
        .spawn()
        .expect("spawn the daemon");
    let fake = app.fake.clone();
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue"
    );
    (app, child)
}

/// Sends `!ping`, waits for the answer and its echo's runs, and stops the
/// daemon (which sends its last spans as it exits).
async fn ping_and_stop(app: &TestApp, mut child: Child) {
    let fake = app.fake.clone();
    fake.send_channel_message(7, "ada@example.com", "support", "t", "!ping");
    assert!(
        eventually(WAIT, || async { !fake.sent_messages().is_empty() }).await,
        "the responder answers"
    );
    let db = app.db.clone();
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 4
        })
        .await,
        "both listeners ran for the command and its answer's echo"
    );
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, WAIT).await.expect("the daemon stops");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn each_event_is_a_trace_of_its_listener_attempts_and_its_reply() {
    let collector = Collector::start().await;
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"zel-test\"\n",
        collector.endpoint()
    );
    let (app, child) = spawned(&telemetry, &[]).await;
    ping_and_stop(&app, child).await;

    let spans = collector.spans();
    let command = spans
        .iter()
        .find(|s| {
            s.name == "event"
                && s.attr("event_type") == Some("message")
                && spans
                    .iter()
                    .any(|r| r.name == "reply send" && r.parent_span_id == s.span_id)
        })
        .unwrap_or_else(|| panic!("the command's event span, parent of the reply's: {spans:#?}"));
    assert!(
        command.parent_span_id.is_empty(),
        "the event is the trace's root"
    );
    assert_eq!(command.service, "zel-test");
    assert_eq!(command.attr("org"), Some("default"), "{command:?}");
    let inbox_id = command.attr("inbox_id").expect("the inbox id");
    assert!(command.attr("event_id").is_some(), "{command:?}");
    let children: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == command.span_id)
        .collect();
    assert!(
        children.iter().all(|c| c.trace_id == command.trace_id),
        "every child is in the event's trace"
    );
    let attempts = |listener: &str| {
        let mut a: Vec<(String, String)> = children
            .iter()
            .filter(|c| c.name == "listener attempt" && c.attr("listener") == Some(listener))
            .map(|c| {
                (
                    c.attr("attempt").unwrap_or("").to_owned(),
                    c.attr("outcome").unwrap_or("").to_owned(),
                )
            })
            .collect();
        a.sort();
        a
    };
    assert_eq!(attempts("ops"), [("1".to_owned(), "success".to_owned())]);
    assert_eq!(
        attempts("retrying"),
        [
            ("1".to_owned(), "failure".to_owned()),
            ("2".to_owned(), "failure".to_owned())
        ],
        "one span per try"
    );
    let reply = children
        .iter()
        .find(|c| c.name == "reply send")
        .expect("the reply's span");
    assert_eq!(reply.attr("listener"), Some("ops"));
    assert_eq!(reply.attr("outcome"), Some("sent"));
    assert_eq!(reply.attr("inbox_id"), Some(inbox_id));
    assert_eq!(
        spans.iter().filter(|s| s.name == "event").count(),
        2,
        "one trace per event: the command and its answer's echo"
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_sent_even_with_the_sdks_environment_set() {
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let (app, child) = spawned(
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ],
    )
    .await;
    ping_and_stop(&app, child).await;
    assert_eq!(collector.requests(), 0, "no request reached the collector");
}

#[tokio::test]
async fn a_sampling_ratio_of_zero_sends_no_span() {
    let collector = Collector::start().await;
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nsampling_ratio = 0\n",
        collector.endpoint()
    );
    let (app, child) = spawned(&telemetry, &[]).await;
    ping_and_stop(&app, child).await;
    assert!(collector.spans().is_empty(), "{:?}", collector.spans());
}
