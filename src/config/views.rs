//! Each organization's view of the configuration: [`Config::organizations`]
//! gives, per `[[zulip]]` entry, the whole configuration with `zulip` that
//! entry, `scaling.instance_id` its name and `listeners.enabled` its
//! selection, so that the code that runs one organization (its client,
//! intake, dispatcher, recorder, reply sender) reads it as it reads a
//! single `[zulip]`. [`Config::organization`] picks one by name, for the
//! commands that act on one organization (`replay --org`).

use super::load::Config;

/// An organization name that no `[[zulip]]` entry has.
#[derive(Debug, thiserror::Error)]
#[error("no organization is named `{name}`; the organizations are: {available}")]
pub struct UnknownOrganization {
    /// The name asked for.
    pub name: String,
    /// The configured names, comma-separated.
    pub available: String,
}

impl Config {
    /// Whether the file configures several organizations (`[[zulip]]`).
    pub fn has_several_organizations(&self) -> bool {
        !self.organizations.is_empty()
    }

    /// The organizations' names, in file order: the `[[zulip]]` names, or
    /// `[scaling] instance_id` for a single organization.
    pub fn organization_names(&self) -> Vec<String> {
        self.organizations()
            .into_iter()
            .map(|c| c.scaling.instance_id)
            .collect()
    }

    /// This configuration as each organization sees it, in file order:
    /// `zulip` its own entry, `scaling.instance_id` its name, and
    /// `listeners.enabled` its selection. One organization sees the
    /// configuration unchanged.
    pub fn organizations(&self) -> Vec<Config> {
        if self.organizations.is_empty() {
            return vec![self.clone()];
        }
        self.organizations
            .iter()
            .map(|z| {
                let mut view = self.clone();
                view.organizations = Vec::new();
                if let Some(name) = &z.name {
                    view.scaling.instance_id = name.clone();
                }
                if let Some(selection) = &z.listeners {
                    view.listeners.enabled = selection.clone();
                }
                view.zulip = z.clone();
                view
            })
            .collect()
    }

    /// Organization `name`'s view ([`Config::organizations`]), or the first
    /// organization's without a name.
    ///
    /// # Errors
    ///
    /// [`UnknownOrganization`] when no organization has that name.
    pub fn organization(&self, name: Option<&str>) -> Result<Config, UnknownOrganization> {
        let mut views = self.organizations();
        let Some(name) = name else {
            return Ok(views.swap_remove(0));
        };
        match views.iter().position(|v| v.scaling.instance_id == name) {
            Some(i) => Ok(views.swap_remove(i)),
            None => Err(UnknownOrganization {
                name: name.to_owned(),
                available: self.organization_names().join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const KNOWN: &[&str] = &["message_logger", "user_activity_tracker"];

    const TWO: &str = r#"
        [[zulip]]
        name = "acme"
        zuliprc = "/etc/zel/acme.zuliprc"
        [[zulip]]
        name = "globex"
        zuliprc = "/etc/zel/globex.zuliprc"
        listeners = ["message_logger"]
        event_types = ["message"]
    "#;

    #[test]
    fn two_entries_are_two_organizations_each_with_its_own_view() {
        let cfg = Config::parse(TWO, KNOWN).unwrap();
        assert!(cfg.has_several_organizations());
        assert_eq!(cfg.organization_names(), ["acme", "globex"]);
        let views = cfg.organizations();
        assert_eq!(views[0].scaling.instance_id, "acme");
        assert_eq!(
            views[0].zulip.zuliprc.as_deref(),
            Some(Path::new("/etc/zel/acme.zuliprc"))
        );
        assert_eq!(
            views[0].listeners.enabled.len(),
            2,
            "all enabled by default"
        );
        assert_eq!(views[1].listeners.enabled, ["message_logger"]);
        assert_eq!(views[1].zulip.event_types, Some(vec!["message".to_owned()]));
        assert!(
            views.iter().all(|v| !v.zulip.use_environment),
            "no organization reads ZULIP_* or ~/.zuliprc"
        );
        assert!(views.iter().all(|v| !v.has_several_organizations()));
    }

    #[test]
    fn an_organization_is_picked_by_name_or_the_first_one() {
        let cfg = Config::parse(TWO, KNOWN).unwrap();
        assert_eq!(cfg.organization(None).unwrap().scaling.instance_id, "acme");
        let globex = cfg.organization(Some("globex")).unwrap();
        assert_eq!(globex.listeners.enabled, ["message_logger"]);
        let e = cfg.organization(Some("initech")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no organization is named `initech`; the organizations are: acme, globex"
        );
        let one = Config::parse("[zulip]\nname = \"acme\"\n", KNOWN).unwrap();
        assert_eq!(
            one.organization(Some("acme")).unwrap().scaling.instance_id,
            "acme"
        );
        assert!(one.organization(Some("globex")).is_err());
    }

    #[test]
    fn a_single_table_is_one_organization_named_by_the_instance_id() {
        let cfg = Config::parse("[zulip]\nsite = \"https://a.example\"\n", KNOWN).unwrap();
        assert!(!cfg.has_several_organizations());
        assert_eq!(cfg.organization_names(), ["default"]);
        assert!(cfg.zulip.use_environment);
        let named = Config::parse("[zulip]\nname = \"acme\"\n", KNOWN).unwrap();
        assert_eq!(named.scaling.instance_id, "acme");
    }

    #[test]
    fn one_array_entry_runs_as_a_single_table() {
        let cfg = Config::parse("[[zulip]]\nname = \"acme\"\n", KNOWN).unwrap();
        assert!(!cfg.has_several_organizations());
        assert_eq!(cfg.organization_names(), ["acme"]);
        assert!(cfg.zulip.use_environment);
    }

    #[test]
    fn missing_and_repeated_names_and_a_missing_zuliprc_are_all_reported() {
        let err = Config::parse(
            "[[zulip]]\nname = \"a\"\nzuliprc = \"x\"\n[[zulip]]\nname = \"a\"\n[[zulip]]\nzuliprc = \"y\"\n",
            KNOWN,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("two `[[zulip]]` entries are named `a`"),
            "{text}"
        );
        assert!(text.contains("organization `a` has no `zuliprc`"), "{text}");
        assert!(text.contains("entry 3 has no `name`"), "{text}");
        assert_eq!(err.problems.len(), 3, "{text}");
    }

    #[test]
    fn allowed_realms_refuses_an_organization_not_listed() {
        let text = format!("{TWO}\n[security]\nallowed_realms = [\"acme\"]\n");
        let err = Config::parse(&text, KNOWN).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(
            err.problems[0]
                .contains("organization `globex` is not in `security.allowed_realms` (acme)"),
            "{err}"
        );
        let both = format!("{TWO}\n[security]\nallowed_realms = [\"acme\", \"globex\"]\n");
        assert!(Config::parse(&both, KNOWN).is_ok());
        let single = Config::parse("[security]\nallowed_realms = [\"acme\"]\n", KNOWN).unwrap_err();
        assert!(
            single.problems[0].contains("organization `default`"),
            "{single}"
        );
    }

    #[test]
    fn a_selection_outside_the_enabled_listeners_and_a_split_are_refused() {
        let text = r#"
            [[zulip]]
            name = "a"
            zuliprc = "x"
            listeners = ["spam"]
            [[zulip]]
            name = "b"
            zuliprc = "y"
            [scaling]
            instance_id = 1
            total_instances = 2
        "#;
        let err = Config::parse(text, KNOWN).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("names `spam`, which is not in `listeners.enabled`"),
            "{text}"
        );
        assert!(text.contains("cannot be split across processes"), "{text}");
    }
}
