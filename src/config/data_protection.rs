//! `[data_protection]`: the guide's section of that name. Only
//! `audit_trail` is read so far: whether every operator action and
//! automatic disable is written to `event_listeners_audit`.

use toml::Table;

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "data_protection";

/// The keys of `[data_protection]`.
pub(super) const KNOWN: &[&str] = &["audit_trail"];

/// `[data_protection]`.
#[derive(Debug, Clone)]
pub struct DataProtectionConfig {
    /// One `event_listeners_audit` row per `enable`, `disable`, `replay`,
    /// `cleanup`, `migrate`, admin API call and automatic disable. On by
    /// default, as in the guide's example: the daemon has always kept this
    /// trail, and turning it off is the operator's explicit choice.
    pub audit_trail: bool,
}

impl Default for DataProtectionConfig {
    fn default() -> Self {
        DataProtectionConfig { audit_trail: true }
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
            _ => r.unknown_key(k),
        }
    }
}
