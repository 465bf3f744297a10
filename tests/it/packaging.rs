//! The Debian package and the systemd files, for real: `scripts/package-deb`
//! builds the package (cargo-deb, from Cargo.toml's `[package.metadata.deb]`)
//! and `dpkg-deb` reads back every asset, conffile and maintainer script;
//! `systemd-analyze verify` checks the unit with the `zulip.service` drop-in
//! and `systemctl --root` shows what enabling it links.
//!
//! The package is made from the debug binary these tests already built
//! (`--no-build`, staged where cargo-deb looks for a release build), so no
//! release build is paid for here; the first run of a checkout installs
//! cargo-deb into `target/tools/` (minutes, once).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{bin, repo};

const PACKAGE: &str = "zulip-event-listeners";
const UNIT: &str = "systemd/zulip-event-listeners.service";
const DROP_IN: &str = "systemd/zulip-event-listeners.service.d/zulip-host.conf";

/// Runs `command` to its end and returns its output, failing the test with
/// its stderr when it does not succeed.
fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A scratch directory in cargo's target dir (the same file system as the
/// built binary, so that it can be hard-linked rather than copied).
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// The value of the first `key=` line of a unit file.
fn unit_value<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

/// Builds the package from the test binary: the binary staged as
/// `STAGE/release/zulip-event-listeners`, `CARGO_TARGET_DIR=STAGE`.
fn build_package(stage: &Path) -> PathBuf {
    let release = stage.join("release");
    fs::create_dir_all(&release).unwrap();
    let staged = release.join(PACKAGE);
    if fs::hard_link(bin(), &staged).is_err() {
        fs::copy(bin(), &staged).unwrap();
    }
    let out = stage.join("out");
    run(Command::new(repo().join("scripts/package-deb"))
        .args(["--no-build", "--fast", "--strip", "--quiet", "--output"])
        .arg(&out)
        .env("CARGO_TARGET_DIR", stage));
    let debs: Vec<PathBuf> = fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package in {}: {debs:?}", out.display());
    debs.into_iter().next().unwrap()
}

/// The `Name <mail>` of a changelog's first ` -- ` trailer line.
fn entry_maintainer(changelog: &str) -> &str {
    changelog
        .lines()
        .find_map(|l| l.strip_prefix(" -- "))
        .and_then(|l| l.split("  ").next())
        .unwrap_or("(no trailer line)")
}

/// `dpkg-deb -c`: each path (without the leading `.`) with its mode and owner.
fn contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    stdout(&run(Command::new("dpkg-deb").arg("-c").arg(deb)))
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.get(5)?.strip_prefix('.')?.to_owned();
            Some((path, (fields[0].to_owned(), fields[1].to_owned())))
        })
        .collect()
}

#[test]
fn the_debian_package_holds_the_daemon_its_unit_conffiles_and_the_user_it_runs_as() {
    let stage = scratch();
    let deb = build_package(stage.path());

    // Control fields.
    let field = |name: &str| stdout(&run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name)));
    assert_eq!(field("Package").trim(), PACKAGE);
    assert!(
        field("Version").starts_with(env!("CARGO_PKG_VERSION")),
        "{}",
        field("Version")
    );
    let depends = field("Depends");
    assert!(
        depends.contains("adduser"),
        "postinst runs adduser: {depends}"
    );
    assert!(depends.contains("libc6"), "$auto found the libc: {depends}");
    let changelog = fs::read_to_string(repo().join("debian/changelog")).unwrap();
    let entry = changelog.lines().next().unwrap_or_default();
    assert!(
        entry.starts_with(&format!("{PACKAGE} ({}-1) ", env!("CARGO_PKG_VERSION"))),
        "debian/changelog's first entry is this version: {entry}"
    );
    assert!(
        field("Maintainer").contains(entry_maintainer(&changelog)),
        "the changelog is signed by the Maintainer"
    );
    let synopsis = field("Description");
    let synopsis = synopsis.lines().next().unwrap_or_default();
    assert!(
        synopsis.len() <= 80,
        "Debian's synopsis limit: {synopsis:?}"
    );

    // Every asset where the unit, the README and logrotate expect it.
    let listed = contents(&deb);
    let expect = [
        ("/usr/bin/zulip-event-listeners", "-rwxr-xr-x"),
        (
            "/usr/lib/systemd/system/zulip-event-listeners.service",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zulip-event-listeners/systemd/zulip-event-listeners-ingest.service",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zulip-event-listeners/systemd/zulip-event-listeners-worker.service",
            "-rw-r--r--",
        ),
        ("/etc/logrotate.d/zulip-event-listeners", "-rw-r--r--"),
        ("/etc/zulip-event-listeners/config.toml", "-rw-r--r--"),
        (
            "/usr/share/zulip-event-listeners/systemd/zulip-host.conf",
            "-rw-r--r--",
        ),
        (
            "/usr/share/man/man1/zulip-event-listeners.1.gz",
            "-rw-r--r--",
        ),
        (
            "/usr/share/bash-completion/completions/zulip-event-listeners",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_zulip-event-listeners",
            "-rw-r--r--",
        ),
        (
            "/usr/share/fish/vendor_completions.d/zulip-event-listeners.fish",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/zulip-event-listeners/copyright",
            "-rw-r--r--",
        ),
    ];
    for (path, mode) in expect {
        let (got_mode, owner) = listed
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the package: {listed:#?}"));
        assert_eq!(got_mode, mode, "{path}");
        assert_eq!(owner, "0/0", "{path} belongs to root");
    }
    assert!(
        !listed.keys().any(|p| p.contains(".service.d/")),
        "the zulip.service drop-in must not be active by default: {listed:#?}"
    );

    // The files are the repository's, byte for byte.
    let root = stage.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    for (source, installed) in [
        (UNIT, "usr/lib/systemd/system/zulip-event-listeners.service"),
        (
            "logrotate/zulip-event-listeners",
            "etc/logrotate.d/zulip-event-listeners",
        ),
        (
            "config/production.toml",
            "etc/zulip-event-listeners/config.toml",
        ),
        (
            DROP_IN,
            "usr/share/zulip-event-listeners/systemd/zulip-host.conf",
        ),
        (
            "contrib/systemd/zulip-event-listeners-ingest.service",
            "usr/share/zulip-event-listeners/systemd/zulip-event-listeners-ingest.service",
        ),
        (
            "contrib/systemd/zulip-event-listeners-worker.service",
            "usr/share/zulip-event-listeners/systemd/zulip-event-listeners-worker.service",
        ),
    ] {
        assert_eq!(
            fs::read(root.join(installed)).unwrap(),
            fs::read(repo().join(source)).unwrap(),
            "{installed} is {source}"
        );
    }
    // The packaged binary is the daemon, and the man page its own.
    let installed_bin = root.join("usr/bin/zulip-event-listeners");
    let version = stdout(&run(Command::new(&installed_bin).arg("--version")));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let man = stdout(&run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/zulip-event-listeners.1.gz"))));
    assert!(man.contains(".TH") && man.contains("check-config"), "{man}");

    // The unit runs what the package installs, with the configuration it ships.
    let unit = fs::read_to_string(repo().join(UNIT)).unwrap();
    let exec_start = unit_value(&unit, "ExecStart").expect("ExecStart=");
    let program = exec_start.split_whitespace().next().unwrap_or_default();
    assert!(
        listed.contains_key(program),
        "ExecStart runs {program}, not in the package"
    );
    assert!(
        exec_start.contains("--config /etc/zulip-event-listeners/config.toml"),
        "{exec_start}"
    );
    let user = unit_value(&unit, "User").expect("User=");
    assert_eq!(user, "zulip-listeners");

    // Conffiles and maintainer scripts.
    let control = stage.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = fs::read_to_string(control.join("conffiles")).unwrap();
    let mut conffiles: Vec<&str> = conffiles.lines().collect();
    conffiles.sort_unstable();
    assert_eq!(
        conffiles,
        [
            "/etc/logrotate.d/zulip-event-listeners",
            "/etc/zulip-event-listeners/config.toml"
        ]
    );
    let script = |name: &str| {
        let path = control.join(name);
        run(Command::new("sh").arg("-n").arg(&path));
        fs::read_to_string(path).unwrap()
    };
    let postinst = script("postinst");
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");
    assert!(
        postinst.contains("adduser --system --group")
            && postinst.contains(&format!("USER={user}\n")),
        "postinst creates the unit's user {user}:\n{postinst}"
    );
    assert!(
        postinst.contains("/var/lib/zulip-event-listeners"),
        "{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-helper update-state zulip-event-listeners.service")
            && postinst.contains("try-restart zulip-event-listeners.service"),
        "cargo-deb's systemd snippets: registered, restarted on upgrade:\n{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start"),
        "not started before it has a zuliprc:\n{postinst}"
    );
    let prerm = script("prerm");
    assert!(
        prerm.contains("deb-systemd-invoke stop zulip-event-listeners.service"),
        "{prerm}"
    );
    let postrm = script("postrm");
    assert!(
        postrm.contains("\"$1\" = \"purge\"")
            && postrm.contains("rm -rf /var/lib/zulip-event-listeners"),
        "{postrm}"
    );
    assert!(
        !postrm.contains("deluser"),
        "the system user stays on purge:\n{postrm}"
    );

    lintian(&deb);
}

/// `lintian` where it is installed (not on a fresh CI machine): no error
/// and no warning.
fn lintian(deb: &Path) {
    let found = Command::new("lintian").arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "lintian is not installed: skipped its check of {} (apt-get install lintian runs it)",
            deb.display()
        );
        return;
    }
    run(Command::new("lintian")
        // initial-upload-closes-no-bugs is about Debian's own archive (an
        // ITP bug to close), which this package is not uploaded to.
        .args(["--fail-on", "error,warning"])
        .args(["--suppress-tags", "initial-upload-closes-no-bugs"])
        .arg(deb));
}

/// A unit directory for `systemd-analyze verify`: the unit with its binary
/// path pointing at the test binary (verify checks that ExecStart= exists),
/// and `drop_in` as `zulip-event-listeners.service.d/zulip-host.conf`.
fn unit_dir(drop_in: &str) -> tempfile::TempDir {
    let dir = scratch();
    let unit = fs::read_to_string(repo().join(UNIT)).unwrap();
    assert_eq!(
        unit.matches("/usr/bin/zulip-event-listeners ").count(),
        2,
        "ExecStartPre= and ExecStart= run the packaged binary"
    );
    let unit = unit.replace(
        "/usr/bin/zulip-event-listeners ",
        &format!("{} ", bin().display()),
    );
    fs::write(dir.path().join("zulip-event-listeners.service"), unit).unwrap();
    let drop_ins = dir.path().join("zulip-event-listeners.service.d");
    fs::create_dir(&drop_ins).unwrap();
    fs::write(drop_ins.join("zulip-host.conf"), drop_in).unwrap();
    dir
}

/// `systemd-analyze verify` of the unit in `dir`: its exit status and the
/// lines it printed about our files (warnings name the file or the unit).
/// Verify also runs `man` for the unit's `Documentation=man:` page: it is
/// found in `dir/man`, generated by the binary as the package's is.
fn verify(dir: &Path) -> (bool, Vec<String>) {
    let man1 = dir.join("man/man1");
    fs::create_dir_all(&man1).unwrap();
    let page = run(Command::new(bin()).arg("man"));
    fs::write(man1.join("zulip-event-listeners.1"), page.stdout).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("zulip-event-listeners.service"))
        .env("MANPATH", dir.join("man"))
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze (Debian package systemd) is needed: {e}"));
    let complaints = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains("zulip"))
        .map(str::to_owned)
        .collect();
    (output.status.success(), complaints)
}

#[test]
fn the_unit_with_the_zulip_host_drop_in_passes_systemd_analyze_verify() {
    let drop_in = fs::read_to_string(repo().join(DROP_IN)).unwrap();
    let dir = unit_dir(&drop_in);

    let (ok, complaints) = verify(dir.path());

    assert!(ok && complaints.is_empty(), "{complaints:#?}");
    // The control: verify reads the drop-in, and a mistake in it is caught.
    let broken = unit_dir(&drop_in.replace("PartOf=", "PartsOf="));
    let (_, complaints) = verify(broken.path());
    assert!(
        complaints
            .iter()
            .any(|l| l.contains("zulip-host.conf") && l.contains("PartsOf")),
        "{complaints:#?}"
    );
}

#[test]
fn the_zulip_host_drop_in_orders_and_ties_the_unit_to_zulip_service() {
    let drop_in = fs::read_to_string(repo().join(DROP_IN)).unwrap();
    let section = |name: &str| -> Vec<&str> {
        drop_in
            .split("\n[")
            .find(|s| s.starts_with(&format!("{name}]")))
            .map(|s| s.lines().skip(1).filter(|l| !l.starts_with('#')).collect())
            .unwrap_or_default()
    };
    assert!(
        section("Unit").contains(&"After=zulip.service"),
        "{drop_in}"
    );
    assert!(
        section("Unit").contains(&"PartOf=zulip.service"),
        "{drop_in}"
    );
    assert!(
        !drop_in
            .lines()
            .any(|l| l.starts_with("Requires=") || l.starts_with("BindsTo=")),
        "Zulip down must not keep the daemon from starting: {drop_in}"
    );

    // Enabled as the README says (the package's unit, the drop-in in /etc),
    // zulip.service starting pulls the daemon in, as multi-user.target does.
    let enabled = |with_drop_in: bool| {
        let root = scratch();
        let lib = root.path().join("usr/lib/systemd/system");
        fs::create_dir_all(&lib).unwrap();
        fs::copy(repo().join(UNIT), lib.join("zulip-event-listeners.service")).unwrap();
        if with_drop_in {
            let etc = root
                .path()
                .join("etc/systemd/system/zulip-event-listeners.service.d");
            fs::create_dir_all(&etc).unwrap();
            fs::write(etc.join("zulip-host.conf"), &drop_in).unwrap();
        }
        run(Command::new("systemctl")
            .arg(format!("--root={}", root.path().display()))
            .args(["enable", "zulip-event-listeners.service"]));
        let wants = |target: &str| {
            root.path()
                .join("etc/systemd/system")
                .join(format!("{target}.wants/zulip-event-listeners.service"))
                .symlink_metadata()
                .is_ok()
        };
        (wants("multi-user.target"), wants("zulip.service"))
    };
    assert_eq!(enabled(true), (true, true));
    assert_eq!(
        enabled(false),
        (true, false),
        "only the drop-in ties it to Zulip"
    );
}
