//! The Python-client peer: `benches/python_peer.py` (the official `zulip`
//! package polling with `get_events`, one `psycopg` INSERT per event, each
//! committed) against the same fake Zulip and PostgreSQL server, in the
//! same run, so the daemon's figure has its peer beside it.
//!
//! The set-up is the benchmark's own: a virtualenv under `target/` with
//! `zulip` and `psycopg[binary]` from PyPI, made once and reused (the
//! tests never install anything).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cpu::Window;
use super::fake_zulip::{FakeOptions, FakeZulip};
use super::{fresh_pg, push_messages, register_queue, write_zuliprc};

/// The peer's figures.
pub(super) struct PeerMeasured {
    pub(super) events: usize,
    pub(super) events_per_s: f64,
    /// PostgreSQL server CPU µs per event.
    pub(super) server_us: f64,
    /// The Python process's own CPU µs per event.
    pub(super) client_us: f64,
}

fn venv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-peer-venv")
}

/// The virtualenv's python, made (or completed) first if needed.
fn python() -> PathBuf {
    let python = venv().join("bin/python");
    let ready = |p: &PathBuf| {
        Command::new(p)
            .args(["-c", "import zulip, psycopg"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return python;
    }
    eprintln!(
        "[peer] making {} (zulip, psycopg[binary])…",
        venv().display()
    );
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv())
        .status()
        .expect("python3 -m venv");
    assert!(made.success(), "python3 -m venv failed");
    let pip = Command::new(venv().join("bin/pip"))
        .args(["install", "-q", "zulip", "psycopg[binary]"])
        .status()
        .expect("pip install");
    assert!(pip.success(), "pip install zulip psycopg[binary] failed");
    assert!(
        ready(&python),
        "the peer's virtualenv cannot import zulip and psycopg"
    );
    python
}

/// The peer on a backlog of `n` message events.
pub(super) async fn peer_run(n: usize) -> PeerMeasured {
    let python = python();
    let url = fresh_pg("zel_bench_peer").await;
    let fake = FakeZulip::start(FakeOptions {
        heartbeat: Duration::from_secs(1),
        rate_limit: None,
        ..FakeOptions::default()
    })
    .await;
    let queue = register_queue(&fake).await;
    eprintln!("[peer] generating {n} events…");
    push_messages(&fake, 0, n);
    let rc = tempfile::NamedTempFile::new().unwrap();
    write_zuliprc(rc.path(), &fake);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python_peer.py");
    let window = Window::start(0.0);
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(rc.path())
        .arg(&queue)
        .arg(n.to_string())
        .arg(&url)
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("the Python peer");
    assert!(out.status.success(), "the Python peer failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the peer's JSON line");
    let events = v["events"].as_u64().unwrap_or(0) as usize;
    let cpu = v["cpu_s"].as_f64().unwrap_or(f64::NAN);
    let (server_us, client_us) = window.per_event(cpu, events);
    PeerMeasured {
        events,
        events_per_s: events as f64 / v["seconds"].as_f64().unwrap_or(f64::NAN),
        server_us,
        client_us,
    }
}
