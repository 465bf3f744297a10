//! Several organizations in one process: the `[[zulip]]` entries (a single
//! `[zulip]` table is one organization, as before), the checks that need
//! the whole file (names present and unique, each entry with its own
//! zuliprc, listener selections among `[listeners] enabled`, names in
//! `[security] allowed_realms`). `views.rs` gives each organization its
//! view of the whole configuration.

use toml::Value;

use super::reader::Reader;
use super::scaling::ScalingConfig;
use super::zulip::{self, ZulipConfig};

/// What the organizations are made of, borrowed from the `Config` being read.
pub(super) struct Parts<'a> {
    /// `[zulip]`, or the first `[[zulip]]` entry.
    pub(super) zulip: &'a mut ZulipConfig,
    /// The `[[zulip]]` entries (cleared when there is only one).
    pub(super) organizations: &'a mut Vec<ZulipConfig>,
    pub(super) scaling: &'a mut ScalingConfig,
    /// `[listeners] enabled`.
    pub(super) enabled: &'a [String],
    /// `[security] allowed_realms`.
    pub(super) allowed: Option<&'a [String]>,
}

/// Reads the `[[zulip]]` entries into `organizations`, and the first one
/// into `first` too (which code that knows one organization reads).
pub(super) fn read_entries(
    r: &mut Reader,
    items: &[Value],
    first: &mut ZulipConfig,
    organizations: &mut Vec<ZulipConfig>,
) {
    if items.is_empty() {
        r.problem("`[[zulip]]` lists no organization".to_owned());
        return;
    }
    r.enter(zulip::SECTION, zulip::KNOWN);
    for item in items {
        let Some(t) = item.as_table() else {
            r.problem("each `[[zulip]]` entry must be a table".to_owned());
            continue;
        };
        let mut entry = ZulipConfig::default();
        zulip::read(r, t, &mut entry);
        organizations.push(entry);
    }
    if let Some(entry) = organizations.first() {
        *first = entry.clone();
    }
}

/// The checks that need the whole file, once every section is read. One
/// organization is kept as `zulip` alone (its name, if any, becomes
/// `[scaling] instance_id`), so that a single entry runs exactly as a
/// `[zulip]` table.
pub(super) fn check(r: &mut Reader, cfg: Parts<'_>) {
    if cfg.organizations.len() == 1 {
        cfg.organizations.clear();
    }
    if cfg.organizations.is_empty() {
        check_one(r, cfg.zulip, cfg.scaling);
    } else {
        check_several(r, cfg.zulip, cfg.organizations, cfg.scaling);
    }
    for z in std::iter::once(&*cfg.zulip).chain(cfg.organizations.iter()) {
        check_selection(r, z, cfg.enabled);
    }
    if let Some(allowed) = cfg.allowed {
        let names = match cfg.organizations.is_empty() {
            true => vec![cfg.scaling.instance_id.clone()],
            false => cfg
                .organizations
                .iter()
                .filter_map(|z| z.name.clone())
                .collect(),
        };
        for name in names {
            if !allowed.contains(&name) {
                r.problem(format!(
                    "organization `{name}` is not in `security.allowed_realms` ({}): it may not run here; add it to the list or remove its [zulip] entry",
                    allowed.join(", ")
                ));
            }
        }
    }
}

fn check_one(r: &mut Reader, zulip: &ZulipConfig, scaling: &mut ScalingConfig) {
    let Some(name) = zulip.name.clone() else {
        return;
    };
    if scaling.total_instances > 1 {
        r.problem(format!(
            "`zulip.name` cannot be set with `scaling.total_instances` = {}: each process of the split is named by its `scaling.instance_id`",
            scaling.total_instances
        ));
    } else {
        scaling.instance_id = name;
    }
}

fn check_several(
    r: &mut Reader,
    first: &mut ZulipConfig,
    organizations: &mut [ZulipConfig],
    scaling: &ScalingConfig,
) {
    if scaling.total_instances > 1 {
        r.problem(format!(
            "several `[[zulip]]` organizations cannot be split across processes (`scaling.total_instances` = {}): run one process per organization to split one",
            scaling.total_instances
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, z) in organizations.iter_mut().enumerate() {
        z.use_environment = false;
        let label = match &z.name {
            Some(name) if seen.contains(name) => {
                r.problem(format!(
                    "two `[[zulip]]` entries are named `{name}`: each organization needs its own name"
                ));
                name.clone()
            }
            Some(name) => {
                seen.push(name.clone());
                name.clone()
            }
            None => {
                r.problem(format!(
                    "`[[zulip]]` entry {} has no `name`: with several organizations each one needs its own (its rows and metrics carry it)",
                    i + 1
                ));
                format!("number {}", i + 1)
            }
        };
        if z.zuliprc.is_none() {
            r.problem(format!(
                "organization `{label}` has no `zuliprc`: with several organizations each one reads its own (the ZULIP_* variables and ~/.zuliprc would give every one the same account)"
            ));
        }
    }
    if let Some(entry) = organizations.first() {
        *first = entry.clone();
    }
}

fn check_selection(r: &mut Reader, z: &ZulipConfig, enabled: &[String]) {
    let Some(selection) = &z.listeners else {
        return;
    };
    let who = z.name.as_deref().unwrap_or("the organization");
    for name in selection {
        if !enabled.contains(name) {
            r.problem(format!(
                "`zulip.listeners` of {who} names `{name}`, which is not in `listeners.enabled` ({})",
                enabled.join(", ")
            ));
        }
    }
}
