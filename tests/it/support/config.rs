//! Config files for a test daemon: a zuliprc for the fake Zulip (or a
//! bogus one), and a config on a given database with test defaults.

use std::path::PathBuf;

use zulip_event_listeners::config::Config;

use super::fake_zulip::FakeZulip;

/// A directory with a zuliprc for `fake` and a config file.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config: Config,
}

/// Writes a zuliprc for `fake` (or a bogus one) and a config using `db_url`,
/// with `extra` TOML appended to the `[performance]`-less base.
pub fn setup(fake: Option<&FakeZulip>, db_url: &str, extra: &str) -> Setup {
    setup_with_key(fake, db_url, extra, fake.map(|f| f.api_key().to_owned()))
}

/// [`setup`] with `key` as the zuliprc's API key (`x` when `None`).
pub fn setup_with_key(
    fake: Option<&FakeZulip>,
    db_url: &str,
    extra: &str,
    key: Option<String>,
) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let zuliprc = dir.path().join("zuliprc");
    let (email, site) = match fake {
        Some(f) => (f.email().to_owned(), f.site()),
        None => (
            "nobody@example.com".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        ),
    };
    write_secret(
        &zuliprc,
        &format!(
            "[api]\nemail={email}\nkey={}\nsite={site}\n",
            key.unwrap_or_else(|| "x".into())
        ),
    );
    let text = format!(
        "[zulip]\nzuliprc = \"{}\"\n[database]\nurl = \"{db_url}\"\n[http]\nbind = \"off\"\n{}{extra}\n",
        zuliprc.display(),
        reliability_defaults(extra)
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, &text).expect("write config");
    let config = Config::parse(&text, &known_listener_names()).expect("valid test config");
    Setup {
        dir,
        config_path,
        config,
    }
}

/// Tests see each failure as it happens: no retries and no circuit
/// breaker, unless the test configures `[queue]` or `[error_handling]`.
fn reliability_defaults(extra: &str) -> String {
    let mut s = String::new();
    if !extra.contains("[queue]") {
        s.push_str("[queue]\nmax_retries = 0\n");
    }
    if !extra.contains("[error_handling]") {
        s.push_str("[error_handling]\ncircuit_breaker_threshold = 0\n");
    }
    s
}

fn known_listener_names() -> Vec<&'static str> {
    vec![
        "message_logger",
        "user_activity_tracker",
        "failing",
        "panicking",
        "hanging",
        "counting",
        "flaky",
        "order_probe",
        "gated",
    ]
}

/// Writes a valid bot zuliprc in `dir` (for a check-config that must find
/// credentials, never contacting them) and returns the `[zulip]` section
/// naming it.
pub fn zulip_section(dir: &std::path::Path) -> String {
    let zuliprc = dir.join("zuliprc");
    write_secret(
        &zuliprc,
        "[api]\nemail=bot@example.com\nkey=k\nsite=https://chat.example.com\n",
    );
    format!("[zulip]\nzuliprc = \"{}\"\n", zuliprc.display())
}

/// Writes a file holding a secret (a zuliprc, a `*_file` secret) as the
/// daemon wants it: readable by its owner only.
pub fn write_secret(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("write a secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod 600 a secret file");
}

/// A directory with one zuliprc per organization (`name`, its fake Zulip)
/// and a config listing them as `[[zulip]]` entries, each with `per_org`
/// TOML inside its entry, on `db_url`, with `extra` TOML appended.
pub fn setup_organizations(orgs: &[(&str, &FakeZulip, &str)], db_url: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::new();
    for (name, fake, per_org) in orgs {
        let zuliprc = dir.path().join(format!("{name}.zuliprc"));
        write_secret(
            &zuliprc,
            &format!(
                "[api]\nemail={}\nkey={}\nsite={}\n",
                fake.email(),
                fake.api_key(),
                fake.site()
            ),
        );
        text.push_str(&format!(
            "[[zulip]]\nname = \"{name}\"\nzuliprc = \"{}\"\n{per_org}\n",
            zuliprc.display()
        ));
    }
    text.push_str(&format!(
        "[database]\nurl = \"{db_url}\"\n[http]\nbind = \"off\"\n{}{extra}\n",
        reliability_defaults(extra)
    ));
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, &text).expect("write config");
    let config = Config::parse(&text, &known_listener_names()).expect("valid test config");
    Setup {
        dir,
        config_path,
        config,
    }
}
