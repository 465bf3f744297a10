//! `mode = "per_event"`: one Python process per event.

use serde_json::Value;

use super::*;

/// Records its stdin, its `ZEL_*` (and `EXTRA`, `ZULIP_*`) variables and
/// its working directory in `<out>/<inbox id>.json`.
const RECORDER: &str = r#"
import json, os, sys
data = sys.stdin.read()
env = {k: v for k, v in os.environ.items() if k.startswith(("ZEL_", "ZULIP_")) or k == "EXTRA"}
with open(os.path.join(sys.argv[1], os.environ["ZEL_INBOX_ID"] + ".json"), "w") as f:
    json.dump({"stdin": data, "env": env, "cwd": os.getcwd()}, f)
"#;

async fn the_command_gets_the_envelope_on_stdin_and_its_variables(backend: Backend) {
    let s = Scripts::new();
    let out = s.path("out");
    std::fs::create_dir(&out).unwrap();
    let command = s.python("recorder.py", RECORDER, &[&out.display().to_string()]);
    let app = start(
        backend,
        "script",
        &format!(
            "[listeners.script]\nkind = \"exec\"\ncommand = {command}\nworking_dir = {:?}\nenv = {{ EXTRA = \"extra value\" }}\n",
            s.dir.path().display().to_string()
        ),
    )
    .await;
    for i in 0..3 {
        app.fake.send_channel_message(
            10,
            "a@example.com",
            "general",
            &format!("t{i}"),
            &format!("hello {i}"),
        );
    }
    until_logged(&app, "script", 3).await;
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'script' AND success AND attempts = 1")
            .await,
        3
    );
    let inbox: Vec<(i64, String)> = app
        .db
        .rows("SELECT id, event_type FROM event_listeners_inbox ORDER BY id")
        .await;
    assert_eq!(inbox.len(), 3);
    for (inbox_id, _) in inbox {
        let text = std::fs::read_to_string(out.join(format!("{inbox_id}.json"))).unwrap();
        let seen: Value = serde_json::from_str(&text).unwrap();
        let stdin = seen["stdin"].as_str().unwrap();
        assert!(
            stdin.ends_with("}\n"),
            "one JSON object and a newline: {stdin}"
        );
        let envelope: Value = serde_json::from_str(stdin).unwrap();
        let message_id = envelope["event"]["message"]["id"].as_i64().unwrap();
        let key = envelope["idempotency_key"].as_str().unwrap();
        assert!(key.ends_with(&format!(":message:{message_id}")), "{key}");
        assert_eq!(envelope["listener"], "script");
        assert_eq!(envelope["attempt"], 1);
        assert_eq!(envelope["inbox_id"], inbox_id);
        assert!(envelope["received_at"].is_string(), "{envelope}");
        assert_eq!(envelope["event"]["type"], "message");
        assert!(envelope["event"]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("hello "));
        let env = &seen["env"];
        assert_eq!(env["ZEL_LISTENER"], "script");
        assert_eq!(env["ZEL_IDEMPOTENCY_KEY"], key);
        assert_eq!(env["ZEL_ATTEMPT"], "1");
        assert_eq!(env["ZEL_INBOX_ID"], inbox_id.to_string());
        assert_eq!(env["ZEL_EVENT_TYPE"], "message");
        assert_eq!(env["EXTRA"], "extra value");
        assert!(
            env.as_object()
                .unwrap()
                .keys()
                .all(|k| !k.starts_with("ZULIP_")),
            "the daemon's credentials are withheld: {env}"
        );
        assert_eq!(
            seen["cwd"].as_str().map(std::path::Path::new),
            Some(s.dir.path().canonicalize().unwrap().as_path())
        );
    }
}

both_backends!(the_command_gets_the_envelope_on_stdin_and_its_variables =>
    exec_command_gets_the_envelope_on_stdin_and_its_variables_on_sqlite,
    exec_command_gets_the_envelope_on_stdin_and_its_variables_on_postgres);

/// Exits 75 on the first attempt of each event and 0 on the next; writes
/// each attempt's number to `<out>/<key>`.
const TEMPFAIL_ONCE: &str = r#"
import os, sys
sys.stdin.read()
key = os.environ["ZEL_IDEMPOTENCY_KEY"].replace(":", "_")
with open(os.path.join(sys.argv[1], key), "a") as f:
    f.write(os.environ["ZEL_ATTEMPT"] + "\n")
if os.environ["ZEL_ATTEMPT"] == "1":
    print("the service is busy", file=sys.stderr)
    sys.exit(75)
"#;

#[tokio::test]
async fn exit_75_is_retried_and_then_succeeds_once() {
    let s = Scripts::new();
    let command = s.python(
        "tempfail.py",
        TEMPFAIL_ONCE,
        &[&s.dir.path().display().to_string()],
    );
    let app = start(
        Backend::Sqlite,
        "flaky_script",
        &format!("[listeners.flaky_script]\nkind = \"exec\"\ncommand = {command}\nretry.max_attempts = 3\nretry.initial_delay = 0.05\n"),
    )
    .await;
    for i in 0..4 {
        app.fake
            .send_channel_message(10, "a@example.com", "general", &format!("t{i}"), "hi");
    }
    until_logged(&app, "flaky_script", 4).await;
    let rows: Vec<(bool, i64)> = app
        .db
        .rows("SELECT success, CAST(attempts AS BIGINT) FROM event_listeners_eventlog WHERE listener_name = 'flaky_script'")
        .await;
    assert_eq!(
        rows,
        vec![(true, 2); 4],
        "each event succeeds on its second try"
    );
    let keys: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("_message_"))
        .collect();
    assert_eq!(keys.len(), 4);
    for k in keys {
        assert_eq!(
            lines_of(&k.path()),
            ["1", "2"],
            "two runs, ZEL_ATTEMPT 1 then 2"
        );
    }
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM event_listeners_deadletter")
            .await,
        0
    );
}

/// Fails for good, after 5 KB of stderr.
const FAILING: &str = r#"
import sys
sys.stdin.read()
sys.stderr.write("noise " * 1000 + "\n")
sys.stderr.write("Traceback: the event makes no sense\n")
sys.exit(1)
"#;

async fn another_exit_status_dead_letters_with_the_stderr_tail(backend: Backend) {
    let s = Scripts::new();
    let command = s.python("failing.py", FAILING, &[]);
    let app = start(
        backend,
        "broken",
        &format!("[listeners.broken]\nkind = \"exec\"\ncommand = {command}\nretry.max_attempts = 3\nretry.initial_delay = 0.05\n"),
    )
    .await;
    app.fake
        .send_channel_message(10, "a@example.com", "general", "t", "hi");
    until_logged(&app, "broken", 1).await;
    let rows: Vec<(bool, i64, Option<String>)> = app
        .db
        .rows("SELECT success, CAST(attempts AS BIGINT), error FROM event_listeners_eventlog WHERE listener_name = 'broken'")
        .await;
    let (success, attempts, error) = &rows[0];
    assert!(!success);
    assert_eq!(*attempts, 1, "a permanent failure is not retried");
    let error = error.as_deref().unwrap();
    assert!(
        error.starts_with("exited with status 1; stderr: "),
        "{error}"
    );
    assert!(
        error.ends_with("Traceback: the event makes no sense"),
        "{error}"
    );
    assert!(
        error.len() <= 4096 + 64,
        "the last 4 KB only: {} bytes",
        error.len()
    );
    let dead: Vec<(i64, Option<String>)> = app
        .db
        .rows("SELECT CAST(attempts AS BIGINT), error FROM event_listeners_deadletter WHERE listener_name = 'broken'")
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1.as_deref(), Some(error));
}

both_backends!(another_exit_status_dead_letters_with_the_stderr_tail =>
    exec_failure_dead_letters_with_the_stderr_tail_on_sqlite,
    exec_failure_dead_letters_with_the_stderr_tail_on_postgres);

/// Starts a grandchild (`sleep`) in its process group, writes both pids to
/// `<out>` and sleeps past any timeout.
const SLEEPER: &str = r#"
import os, subprocess, sys, time
sys.stdin.read()
grandchild = subprocess.Popen(["sleep", "300"])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\n{grandchild.pid}\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"#;

#[tokio::test]
async fn a_timed_out_run_kills_the_whole_process_group() {
    let s = Scripts::new();
    let pids = s.path("pids");
    let command = s.python("sleeper.py", SLEEPER, &[&pids.display().to_string()]);
    let app = start(
        Backend::Sqlite,
        "sleepy",
        &format!("[listeners.sleepy]\nkind = \"exec\"\ncommand = {command}\ntimeout = 5\n"),
    )
    .await;
    app.fake
        .send_channel_message(10, "a@example.com", "general", "t", "hi");
    until_logged(&app, "sleepy", 1).await;
    let rows: Vec<(bool, Option<String>)> = app
        .db
        .rows("SELECT success, error FROM event_listeners_eventlog WHERE listener_name = 'sleepy'")
        .await;
    assert!(!rows[0].0);
    assert!(
        rows[0].1.as_deref().unwrap().contains("timed out"),
        "{rows:?}"
    );
    let pids: Vec<i32> = s.lines("pids").iter().map(|p| p.parse().unwrap()).collect();
    assert_eq!(
        pids.len(),
        2,
        "the script started its grandchild before the timeout"
    );
    for pid in pids {
        assert!(
            until_gone(pid).await,
            "process {pid} of the group was killed"
        );
    }
}

/// Answers each message with a reply naming its content.
const REPLYING: &str = r#"
import json, sys
envelope = json.load(sys.stdin)
print("some log line first")
print(json.dumps({"content": "got: " + envelope["event"]["message"]["content"]}))
"#;

/// `(listener, content, channel, topic, user ids)` of a reply outbox row.
type ReplyRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn a_content_on_stdout_is_queued_as_a_reply(backend: Backend) {
    let s = Scripts::new();
    let chatty = s.python("chatty.py", REPLYING, &[]);
    let replying = s.python(
        "reply.py",
        &REPLYING.replace("print(\"some log line first\")\n", ""),
        &[],
    );
    let app = start_with(
        backend,
        &["chatty", "replier"],
        &format!(
            "[listeners.chatty]\nkind = \"exec\"\ncommand = {chatty}\n\
             [listeners.replier]\nkind = \"exec\"\ncommand = {replying}\nevent_types = [\"message\"]\n"
        ),
    )
    .await;
    app.fake
        .send_channel_message(10, "a@example.com", "general", "deploys", "!status");
    app.fake
        .send_direct_message(11, "b@example.com", &[app.fake.user_id()], "hello bot");
    until_logged(&app, "replier", 2).await;
    until_logged(&app, "chatty", 2).await;
    let rows: Vec<ReplyRow> = app
        .db
        .rows("SELECT listener_name, content, channel, topic, user_ids FROM event_listeners_replyoutbox ORDER BY id")
        .await;
    // The chatty script printed a log line before its JSON: no reply.
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.contains(&(
        "replier".to_owned(),
        "got: !status".to_owned(),
        Some("general".to_owned()),
        Some("deploys".to_owned()),
        None
    )));
    let dm = rows.iter().find(|r| r.1 == "got: hello bot").unwrap();
    let mut ids: Vec<i64> =
        dm.4.as_deref()
            .unwrap()
            .split(',')
            .map(|i| i.parse().unwrap())
            .collect();
    ids.sort_unstable();
    let mut expected = vec![11, app.fake.user_id()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

both_backends!(a_content_on_stdout_is_queued_as_a_reply =>
    exec_stdout_content_is_queued_as_a_reply_on_sqlite,
    exec_stdout_content_is_queued_as_a_reply_on_postgres);
