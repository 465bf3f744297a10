//! `[data_protection]`: the guide's section of that name. `audit_trail`:
//! whether every operator action and automatic disable is written to
//! `event_listeners_audit`. `log_sanitization`: whether log lines may carry
//! what people wrote, or ids only. `max_content_length` with
//! `truncate_payloads`: how much of a message's content webhooks and
//! commands receive. `encrypt_sensitive_data` and `key_file` (or
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
    "log_sanitization",
    "max_content_length",
    "truncate_payloads",
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
    /// No log line carries message content, topic names, emails, full
    /// names, raw event text or what a receiver or a command wrote: ids
    /// only. On by default (the guide's default); `false` allows them, for
    /// debugging.
    pub log_sanitization: bool,
    /// The most characters of a message's content kept in what listeners
    /// store (a reply's content) and, with `truncate_payloads`, in what
    /// webhooks and commands receive; the rest is cut and the cut marked.
    /// `None` (the default): no limit, so that upgrading changes nothing
    /// that is stored or sent.
    pub max_content_length: Option<usize>,
    /// Whether `max_content_length` applies to the event webhooks and
    /// commands receive too (the content cut, `content_truncated: true`).
    /// Off by default: a receiver gets the event as Zulip sent it.
    pub truncate_payloads: bool,
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
            log_sanitization: true,
            max_content_length: None,
            truncate_payloads: false,
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
            "log_sanitization" => {
                if let Some(b) = r.bool(&key, v) {
                    out.log_sanitization = b;
                }
            }
            "max_content_length" => {
                if let Some(n) = r.positive_int(&key, v) {
                    out.max_content_length = Some(usize::try_from(n).unwrap_or(usize::MAX));
                }
            }
            "truncate_payloads" => {
                if let Some(b) = r.bool(&key, v) {
                    out.truncate_payloads = b;
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
    if out.truncate_payloads && out.max_content_length.is_none() {
        r.problem(format!(
            "`{}` needs `{}`: there is no length to cut payloads to",
            r.key("truncate_payloads"),
            r.key("max_content_length")
        ));
    }
    out.key = read_secret(r, SECTION, t, "key");
    if out.encrypt_sensitive_data && out.key.is_none() {
        r.problem(format!(
            "`{SECTION}.encrypt_sensitive_data = true` needs `{SECTION}.key_file` (or `key_env`): a file of 256-bit keys, one per line, e.g. from `openssl rand -hex 32`"
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(&format!("[zulip]\nzuliprc = \"z\"\n{text}"), &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn logs_are_sanitized_and_nothing_is_cut_by_default() {
        let c = parse("").unwrap().data_protection;

        assert!(c.log_sanitization);
        assert_eq!(c.max_content_length, None);
        assert!(!c.truncate_payloads);
    }

    #[test]
    fn the_keys_are_read() {
        let c = parse("[data_protection]\nlog_sanitization = false\nmax_content_length = 20\ntruncate_payloads = true\n")
            .unwrap()
            .data_protection;

        assert!(!c.log_sanitization);
        assert_eq!(c.max_content_length, Some(20));
        assert!(c.truncate_payloads);
    }

    #[test]
    fn a_zero_length_and_payloads_cut_to_no_length_are_refused() {
        let zero = parse("[data_protection]\nmax_content_length = 0\n").unwrap_err();
        let alone = parse("[data_protection]\ntruncate_payloads = true\n").unwrap_err();

        assert!(zero.contains("max_content_length"), "{zero}");
        assert!(
            alone.contains("needs `data_protection.max_content_length`"),
            "{alone}"
        );
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
