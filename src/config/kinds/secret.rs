//! [`SecretSource`]: where a secret is read from (`*_file` or `*_env`),
//! and its reading at start, so a secret never sits in the config file.

use std::path::PathBuf;

use secrecy::SecretString;
use toml::Table;

use super::super::reader::Reader;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `NAME_file`: the file's content, trailing newline removed.
    File(PathBuf),
    /// `NAME_env`: the environment variable's value.
    Env(String),
}

impl SecretSource {
    /// Reads the secret.
    ///
    /// # Errors
    ///
    /// A sentence naming the file or variable when it cannot be read or is empty.
    pub fn read(&self) -> Result<SecretString, String> {
        let value = match self {
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the secret file {}: {e}", p.display()))?,
            SecretSource::Env(v) => std::env::var(v)
                .map_err(|_| format!("the environment variable `{v}` is not set"))?,
        };
        let value = value.trim_end_matches(['\n', '\r']).to_owned();
        if value.is_empty() {
            return Err(format!("{self} is empty"));
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
pub(in crate::config) fn read_secret(
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
