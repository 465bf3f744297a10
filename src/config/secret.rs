//! [`SecretSource`]: where a secret is read from (`NAME_file` or
//! `NAME_env`), never the config file itself, and its reading at start:
//! the file checked by the permissions rule (`permissions.rs`), a trailing
//! newline dropped, the value handed over in a [`SecretString`] without a
//! copy left behind. Every secret of the configuration (webhook secrets and
//! tokens, the database password, and those to come) is one of these,
//! read by [`read_secret`].

use std::path::PathBuf;

use secrecy::SecretString;
use toml::Table;

use super::permissions::{read_secret_file, FilePermissions, SecretFileError};
use super::reader::Reader;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `NAME_file`: the file's content, trailing newline removed.
    File(PathBuf),
    /// `NAME_env`: the environment variable's value.
    Env(String),
}

/// Why a secret could not be read. No message contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read, or breaks the permissions rule.
    #[error(transparent)]
    File(#[from] SecretFileError),
    /// The file is not UTF-8: (path).
    #[error("the secret file {file} is not UTF-8 text", file = .0.display())]
    NotText(PathBuf),
    /// The variable is not set (or not Unicode): (name).
    #[error("the environment variable `{0}` is not set")]
    EnvUnset(String),
    /// The file or variable holds nothing: (the source's description).
    #[error("{0} is empty")]
    Empty(String),
}

impl SecretSource {
    /// Reads the secret; a file is checked against the permissions rule
    /// as `policy` says.
    ///
    /// # Errors
    ///
    /// [`SecretError`] naming the file or variable when it cannot be read,
    /// is empty, or (a file) others may read it.
    pub fn read(&self, policy: FilePermissions) -> Result<SecretString, SecretError> {
        let mut value = match self {
            SecretSource::File(p) => {
                let mut bytes = read_secret_file(p, policy)?;
                // The bytes are moved, not copied, into the String.
                String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
                    let mut bytes = e.into_bytes();
                    zeroize::Zeroize::zeroize(&mut bytes);
                    SecretError::NotText(p.clone())
                })?
            }
            SecretSource::Env(v) => {
                std::env::var(v).map_err(|_| SecretError::EnvUnset(v.clone()))?
            }
        };
        let len = value.trim_end_matches(['\n', '\r']).len();
        // Truncating in place, rather than copying the trimmed text, leaves
        // no second copy of the secret behind.
        value.truncate(len);
        if value.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(SecretString::from(value))
    }
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "the secret file {}", p.display()),
            SecretSource::Env(v) => write!(f, "the environment variable `{v}`"),
        }
    }
}

/// Reads `{base}_file` / `{base}_env` of table `t` (at `prefix`); refuses
/// `{base}` itself, and both at once. `None` when neither is set.
pub(super) fn read_secret(
    r: &mut Reader,
    prefix: &str,
    t: &Table,
    base: &str,
) -> Option<SecretSource> {
    if t.contains_key(base) {
        r.problem(format!(
            "`{prefix}.{base}` would put a secret in the config file: write it to a file readable by the daemon only and set `{prefix}.{base}_file`, or set `{prefix}.{base}_env` to an environment variable's name"
        ));
    }
    let file = t
        .get(&format!("{base}_file"))
        .and_then(|v| r.string(&format!("{prefix}.{base}_file"), v));
    let env = t
        .get(&format!("{base}_env"))
        .and_then(|v| r.string(&format!("{prefix}.{base}_env"), v));
    match (file, env) {
        (Some(_), Some(_)) => {
            r.problem(format!(
                "`{prefix}.{base}_file` and `{prefix}.{base}_env` are both set: keep one"
            ));
            None
        }
        (Some(f), None) if !f.is_empty() => Some(SecretSource::File(PathBuf::from(f))),
        (None, Some(e)) if !e.is_empty() => Some(SecretSource::Env(e)),
        (None, None) => None,
        _ => {
            r.problem(format!("`{prefix}.{base}_file`/`_env` must not be empty"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn a_file_secret_loses_its_trailing_newline_and_a_loose_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "hunter2\r\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let source = SecretSource::File(path.clone());
        let secret = source.read(FilePermissions::Enforce).unwrap();
        assert_eq!(secret.expose_secret(), "hunter2");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = source.read(FilePermissions::Enforce).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(source.read(FilePermissions::AllowInsecure).is_ok());
    }

    #[test]
    fn an_empty_file_or_an_unset_variable_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = SecretSource::File(path.clone())
            .read(FilePermissions::Enforce)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the secret file {} is empty", path.display())
        );
        let err = SecretSource::Env("ZEL_TEST_SURELY_UNSET".into())
            .read(FilePermissions::Enforce)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the environment variable `ZEL_TEST_SURELY_UNSET` is not set"
        );
    }
}
