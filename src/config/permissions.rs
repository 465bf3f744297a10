//! The permissions rule for files that hold a secret (the zuliprc, a
//! `*_file` secret, a TLS client key): only the daemon's effective user may
//! read it, and that user owns it. A file that breaks the rule is refused
//! with the `chmod 600` / `chown` to run; [`FilePermissions::AllowInsecure`]
//! (`--allow-insecure-permissions`, for containers whose secret mounts are
//! group-readable or owned by root) turns the refusal into a warning.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// What a secret file that breaks the permissions rule gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FilePermissions {
    /// Refused (the default).
    #[default]
    Enforce,
    /// Read anyway, with a warning (`--allow-insecure-permissions`).
    AllowInsecure,
}

/// A secret file that others may read, or that another user owns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.sentence())]
pub struct PermissionsError {
    path: PathBuf,
    /// The file's permission bits, when its group or others have any.
    loose_mode: Option<u32>,
    /// The file's owner (uid) and the daemon's user (its name, or its uid
    /// when it has none), when they differ.
    foreign_owner: Option<(u32, String)>,
}

impl PermissionsError {
    /// The commands that fix the file, e.g. `chmod 600 /etc/zel/zuliprc`.
    pub fn fixes(&self) -> Vec<String> {
        let path = self.path.display();
        let mut fixes = Vec::new();
        if let Some((_, user)) = &self.foreign_owner {
            fixes.push(format!("chown {user} {path}"));
        }
        if self.loose_mode.is_some() {
            fixes.push(format!("chmod 600 {path}"));
        }
        fixes
    }

    fn sentence(&self) -> String {
        let mut what = Vec::new();
        if let Some(mode) = self.loose_mode {
            what.push(format!(
                "is readable or writable by its group or others (mode {mode:03o})"
            ));
        }
        if let Some((owner, user)) = &self.foreign_owner {
            what.push(format!(
                "is owned by uid {owner}, not by the daemon's user {user}"
            ));
        }
        let fixes: Vec<String> = self.fixes().iter().map(|f| format!("`{f}`")).collect();
        format!(
            "the secret file {} {}: run {} (or start with --allow-insecure-permissions, e.g. in a container whose secret mounts cannot be changed)",
            self.path.display(),
            what.join(" and "),
            fixes.join(" and ")
        )
    }
}

/// Why a secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// It cannot be opened or read: (path, cause).
    #[error("cannot read the secret file {file}: {1}", file = .0.display())]
    Unreadable(PathBuf, #[source] std::io::Error),
    /// It breaks the permissions rule.
    #[error(transparent)]
    Permissions(#[from] PermissionsError),
}

/// Checks the file `meta` describes against the rule: `Ok` when it holds,
/// or when `policy` allows it (then a warning is logged).
///
/// # Errors
///
/// [`PermissionsError`] naming the `chmod`/`chown` to run.
pub fn check_secret_file(
    path: &Path,
    meta: &Metadata,
    policy: FilePermissions,
) -> Result<(), PermissionsError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let Some(problem) = judge(path, meta.mode(), meta.uid(), euid) else {
        return Ok(());
    };
    match policy {
        FilePermissions::Enforce => Err(problem),
        FilePermissions::AllowInsecure => {
            tracing::warn!(file = %path.display(), fix = %problem.fixes().join("; "), "A secret file others may read or that another user owns is used anyway (--allow-insecure-permissions)");
            Ok(())
        }
    }
}

/// Opens `path`, checks it (on the opened file, so a swap between the check
/// and the read is not possible) and reads it whole; the bytes are wiped
/// when dropped.
///
/// # Errors
///
/// [`SecretFileError`] when it cannot be read or breaks the rule.
pub fn read_secret_file(
    path: &Path,
    policy: FilePermissions,
) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let unreadable = |e| SecretFileError::Unreadable(path.to_owned(), e);
    let mut file = File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    check_secret_file(path, &meta, policy)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.read_to_end(&mut bytes).map_err(unreadable)?;
    Ok(bytes)
}

/// The problem with a file of `mode` owned by `owner`, for a daemon
/// running as `euid`, if any.
fn judge(path: &Path, mode: u32, owner: u32, euid: u32) -> Option<PermissionsError> {
    let mode = mode & 0o7777;
    let loose_mode = (mode & 0o077 != 0).then_some(mode);
    let foreign_owner = (owner != euid).then(|| (owner, user_name(euid)));
    (loose_mode.is_some() || foreign_owner.is_some()).then(|| PermissionsError {
        path: path.to_owned(),
        loose_mode,
        foreign_owner,
    })
}

/// The name of user `uid` (for `chown`), or the number when it has none.
fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value (null pointers, zeros);
    // getpwuid_r fills it and points its strings into `buf`, which outlives
    // every use below; `found` is null or points at `pwd`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc == 0 && !found.is_null() && !pwd.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    uid.to_string()
}

impl fmt::Display for FilePermissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilePermissions::Enforce => "enforced",
            FilePermissions::AllowInsecure => "not enforced (--allow-insecure-permissions)",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn file_with_mode(mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_file_only_its_owner_reads_is_read() {
        for mode in [0o600, 0o400] {
            let (_dir, path) = file_with_mode(mode);
            let bytes = read_secret_file(&path, FilePermissions::Enforce).unwrap();
            assert_eq!(&bytes[..], b"s3cret\n");
        }
    }

    #[test]
    fn a_group_or_world_readable_file_is_refused_with_the_chmod_to_run() {
        for mode in [0o640, 0o644, 0o604, 0o660] {
            let (_dir, path) = file_with_mode(mode);
            let err = read_secret_file(&path, FilePermissions::Enforce).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("run `chmod 600 {}`", path.display())),
                "{text}"
            );
            assert!(text.contains(&format!("(mode {mode:03o})")), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn allow_insecure_reads_a_loose_file_anyway() {
        let (_dir, path) = file_with_mode(0o644);
        let bytes = read_secret_file(&path, FilePermissions::AllowInsecure).unwrap();
        assert_eq!(&bytes[..], b"s3cret\n");
    }

    #[test]
    fn a_file_another_user_owns_is_refused_with_the_chown_to_run() {
        let path = Path::new("/etc/zel/zuliprc");
        let err = judge(path, 0o100600, 0, 1000).unwrap();
        assert_eq!(
            err.fixes(),
            [format!("chown {} /etc/zel/zuliprc", user_name(1000))]
        );
        assert!(err
            .to_string()
            .contains("is owned by uid 0, not by the daemon's user"));
        let both = judge(path, 0o644, 0, 1000).unwrap();
        assert_eq!(both.fixes().len(), 2, "{both}");
        assert!(
            both.to_string().contains(" and is owned by uid 0"),
            "{both}"
        );
        assert_eq!(judge(path, 0o600, 1000, 1000), None);
    }

    #[test]
    fn a_missing_file_is_unreadable_naming_it() {
        let err =
            read_secret_file(Path::new("/nonexistent/key"), FilePermissions::Enforce).unwrap_err();
        assert!(matches!(err, SecretFileError::Unreadable(..)));
        assert!(err.to_string().contains("/nonexistent/key"), "{err}");
    }
}
