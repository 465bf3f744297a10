//! `run --events FILE`: recorded events through the real binary.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::*;

fn run_events(config: &std::path::Path, file: &std::path::Path) -> std::process::Output {
    Command::new(bin())
        .args([
            "--config",
            &config.display().to_string(),
            "run",
            "--events",
            &file.display().to_string(),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the binary")
}

/// Counts of each event type in a JSON-lines file, heartbeats excluded.
fn type_counts(path: &std::path::Path) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = v["type"].as_str().unwrap().to_owned();
        if t != "heartbeat" {
            *counts.entry(t).or_insert(0) += 1;
        }
    }
    counts
}

async fn sample_file_is_stored_and_dispatched(backend: Backend) {
    let db = TestDb::new(backend).await;
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let s = setup(None, &db.url, "");
    let sample = repo().join("examples/sample-events.jsonl");
    let expected = type_counts(&sample);
    let total: i64 = expected.values().sum();

    let out = run_events(&s.config_path, &sample);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("stored {total} new event(s)")),
        "{stdout}"
    );

    for (t, n) in &expected {
        let got = db
            .scalar(&format!(
                "SELECT count(*) FROM event_listeners_inbox WHERE event_type = '{t}'"
            ))
            .await;
        assert_eq!(got, *n, "inbox rows of type {t}");
    }
    let messages = expected["message"];
    let sum = |types: &[&str]| -> i64 {
        types
            .iter()
            .map(|t| expected.get(*t).copied().unwrap_or(0))
            .sum()
    };
    let logged = sum(&["message", "update_message", "delete_message"]);
    let tracked = sum(&[
        "message",
        "reaction",
        "presence",
        "typing",
        "update_message",
    ]);
    let runs = db
        .text_pairs("SELECT listener_name, CAST(count(*) AS TEXT) FROM event_listeners_eventlog GROUP BY listener_name ORDER BY 1")
        .await;
    assert_eq!(
        runs,
        vec![
            ("message_logger".to_owned(), Some(logged.to_string())),
            (
                "user_activity_tracker".to_owned(),
                Some(tracked.to_string())
            ),
        ]
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        messages
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE NOT success")
            .await,
        0
    );

    // The same file again: every line is already stored, nothing runs twice.
    let again = run_events(&s.config_path, &sample);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(
        stdout.contains(&format!("stored 0 new event(s), {total} already stored")),
        "{stdout}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        total
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await,
        logged + tracked
    );
    db.drop_db().await;
}

both_backends!(sample_file_is_stored_and_dispatched =>
    the_sample_file_is_stored_and_dispatched_on_sqlite,
    the_sample_file_is_stored_and_dispatched_on_postgres);

#[tokio::test]
async fn zulip_example_events_are_each_stored_with_their_type_and_op() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = setup(None, &db.url, "");
    let file = repo().join("tests/fixtures/zulip-example-events.jsonl");
    let expected: Vec<(String, Option<String>)> =
        std::fs::read_to_string(repo().join("tests/fixtures/zulip-example-events.expected.tsv"))
            .unwrap()
            .lines()
            .map(|l| {
                let (t, op) = l.split_once('\t').unwrap_or((l, ""));
                (t.to_owned(), Some(op.to_owned()).filter(|o| !o.is_empty()))
            })
            .filter(|(t, _)| t != "heartbeat")
            .collect();

    let out = run_events(&s.config_path, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let stored = db
        .text_pairs("SELECT event_type, op FROM event_listeners_inbox ORDER BY event_id")
        .await;
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn a_malformed_line_is_reported_with_its_number_and_the_rest_is_processed() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = setup(None, &db.url, "");
    let file = s.dir.path().join("mixed.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"type":"reaction","op":"add","user_id":5,"emoji_name":"tada","message_id":1,"id":0}"#, "\n",
            "{not json\n",
            r#"{"id":2,"no_type":true}"#, "\n",
            r#"{"type":"typing","op":"start","sender":{"user_id":6,"email":"e@x"},"id":3}"#, "\n",
        ),
    )
    .unwrap();

    let out = run_events(&s.config_path, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("line 2:"), "{stdout}");
    assert!(stdout.contains("line 3:"), "{stdout}");
    assert!(
        stdout.contains("2 line(s) skipped (2 malformed)"),
        "{stdout}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        2
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_useractivity")
            .await,
        2
    );
}

/// A reaction event on line `id + 1` of a file.
fn reaction_line(id: i64) -> String {
    format!(
        r#"{{"type":"reaction","op":"add","user_id":5,"emoji_name":"tada","message_id":1,"id":{id}}}"#
    )
}

#[tokio::test]
async fn an_invalid_utf8_line_is_skipped_with_its_number_and_offset_and_the_rest_is_stored() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = setup(None, &db.url, "");
    let file = s.dir.path().join("bad-utf8.jsonl");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(reaction_line(0).as_bytes());
    bytes.push(b'\n');
    let bad_start = bytes.len();
    bytes.extend_from_slice(br#"{"type":"reaction","op":"add","user_id":5,"emoji_name":"ta"#);
    let bad_offset = bytes.len() - bad_start;
    bytes.extend_from_slice(b"\xff\xfe");
    bytes.extend_from_slice(br#"da","message_id":1,"id":1}"#);
    bytes.push(b'\n');
    bytes.extend_from_slice(reaction_line(2).as_bytes());
    bytes.push(b'\n');
    std::fs::write(&file, &bytes).unwrap();

    let out = run_events(&s.config_path, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!(
        "line 2: not UTF-8: byte 0xFF at byte {bad_offset} of the line (byte {} of the file)",
        bad_start + bad_offset
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(
        stdout.contains("stored 2 new event(s)") && stdout.contains("1 line(s) skipped"),
        "{stdout}"
    );
    assert_eq!(
        db.text_pairs("SELECT CAST(event_id AS TEXT), event_type FROM event_listeners_inbox ORDER BY event_id")
            .await,
        vec![
            ("1".to_owned(), Some("reaction".to_owned())),
            ("3".to_owned(), Some("reaction".to_owned())),
        ]
    );
}

/// The longest line `run --events` reads, as the README documents it.
const LINE_LIMIT: usize = 16 << 20;

#[tokio::test]
async fn a_line_over_the_length_limit_is_skipped_without_ending_the_file() {
    use std::io::Write;
    let db = TestDb::new(Backend::Sqlite).await;
    let s = setup(None, &db.url, "");
    let file = s.dir.path().join("long.jsonl");
    // A valid reaction whose emoji name pushes the line one byte past the
    // limit: read whole, it would be stored.
    let head = br#"{"type":"reaction","op":"add","user_id":5,"message_id":1,"id":1,"emoji_name":""#;
    let tail = br#""}"#;
    let limit = LINE_LIMIT;
    let filler = limit + 1 - head.len() - tail.len();
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    writeln!(w, "{}", reaction_line(0)).unwrap();
    w.write_all(head).unwrap();
    let block = vec![b'a'; 64 * 1024];
    let mut left = filler;
    while left > 0 {
        let n = left.min(block.len());
        w.write_all(&block[..n]).unwrap();
        left -= n;
    }
    w.write_all(tail).unwrap();
    w.write_all(b"\n").unwrap();
    writeln!(w, "{}", reaction_line(2)).unwrap();
    w.flush().unwrap();
    drop(w);

    let out = run_events(&s.config_path, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "line 2: longer than the 16 MiB line limit ({} bytes)",
            limit + 1
        )),
        "{stdout}"
    );
    assert!(stdout.contains("1 line(s) skipped"), "{stdout}");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        2
    );
}

#[tokio::test]
async fn a_file_whose_runs_the_database_refuses_exits_4() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.migrate().await;
    // Events are stored, but every listener run's event-log row is refused.
    db.execute(
        "CREATE TRIGGER refuse_runs BEFORE INSERT ON event_listeners_eventlog \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .await;
    let s = setup(None, &db.url, "");
    let file = s.dir.path().join("one.jsonl");
    std::fs::write(&file, format!("{}\n", reaction_line(0))).unwrap();

    let out = run_events(&s.config_path, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stdout.contains("stored 1 new event(s)"), "{stdout}");
    assert!(
        stderr.contains("1 listener run(s) could not be recorded"),
        "{stderr}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await,
        0
    );
}
