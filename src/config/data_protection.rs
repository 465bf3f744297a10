//! `[data_protection]`: the guide's section of that name. `audit_trail`:
//! whether every operator action and automatic disable is written to
//! `event_listeners_audit`. `encrypt_sensitive_data` and `key_file` (or
//! `key_env`): whether the sensitive columns are encrypted at rest, and the
//! keys that encrypt and decrypt them (read by `store::Keyring`).

use toml::Table;

use super::reader::Reader;
use super::secret::{read_secret, SecretSource};

/// The section's name.
pub(super) const SECTION: &str = "data_protection";

/// The keys of `[data_protection]`.
pub(super) const KNOWN: &[&str] = &[
    "audit_trail",
    "encrypt_sensitive_data",
    "key",
    "key_file",
    "key_env",
];

/// `[data_protection]`.
#[derive(Debug, Clone)]
pub struct DataProtectionConfig {
    /// One `event_listeners_audit` row per `enable`, `disable`, `replay`,
    /// `cleanup`, `migrate`, admin API call and automatic disable. On by
    /// default, as in the guide's example: the daemon has always kept this
    /// trail, and turning it off is the operator's explicit choice.
    pub audit_trail: bool,
    /// New inbox rows (raw event JSON), listener data values and reply
    /// contents are encrypted with the first key of [`Self::key`]. Off by
    /// default; on, it needs a key.
    pub encrypt_sensitive_data: bool,
    /// Where the keys come from (`key_file` / `key_env`): one per line, the
    /// first encrypting, all decrypting. Without encryption on, it only
    /// reads rows encrypted earlier.
    pub key: Option<SecretSource>,
}

impl Default for DataProtectionConfig {
    fn default() -> Self {
        DataProtectionConfig {
            audit_trail: true,
            encrypt_sensitive_data: false,
            key: None,
        }
    }
}

/// Reads `[data_protection]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut DataProtectionConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "audit_trail" => {
                if let Some(b) = r.bool(&key, v) {
                    out.audit_trail = b;
                }
            }
            "encrypt_sensitive_data" => {
                if let Some(b) = r.bool(&key, v) {
                    out.encrypt_sensitive_data = b;
                }
            }
            // Read below, together.
            "key" | "key_file" | "key_env" => {}
            _ => r.unknown_key(k),
        }
    }
    out.key = read_secret(r, SECTION, t, "key");
    if out.encrypt_sensitive_data && out.key.is_none() {
        r.problem(format!(
            "`{SECTION}.encrypt_sensitive_data = true` needs `{SECTION}.key_file` (or `key_env`): a file of 256-bit keys, one per line, e.g. from `openssl rand -hex 32`"
        ));
    }
}

#[cfg(test)]
mod encryption_tests {
    use crate::config::{Config, SecretSource};

    #[test]
    fn encryption_needs_a_key_file_and_a_key_in_the_config_file_is_refused() {
        let err = Config::parse("[data_protection]\nencrypt_sensitive_data = true\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs `data_protection.key_file`"), "{err}");
        let err = Config::parse("[data_protection]\nkey = \"00ff\"\n", &[]).unwrap_err();
        assert!(
            err.to_string().contains("data_protection.key_file"),
            "{err}"
        );
        assert!(!err.to_string().contains("00ff"), "{err}");
        let c = Config::parse(
            "[data_protection]\nencrypt_sensitive_data = true\nkey_file = \"/etc/zel/keys\"\n",
            &[],
        )
        .unwrap();
        assert!(c.data_protection.encrypt_sensitive_data);
        assert_eq!(
            c.data_protection.key,
            Some(SecretSource::File("/etc/zel/keys".into()))
        );
    }
}
