//! `/metrics` of several organizations in one process: each organization
//! has its own [`Metrics`], every sample labelled `org`; the daemon's own
//! (the process, the build, the HTTP server's refusals) come from the
//! daemon's registry, without the label. The families of the same name are
//! merged into one, as the exposition format wants.

use prometheus::proto::MetricFamily;

use super::{encode, name, Metrics};

/// Families that are the daemon's, not an organization's.
fn daemon_wide(family: &str) -> bool {
    family == name("build_info")
        || family == name("http_unauthorized_total")
        || family.starts_with(&name("process_"))
}

/// The exposition of the daemon's own metrics (`daemon`) and every
/// organization's (`orgs`, each labelled `org`).
pub(crate) fn render_organizations(daemon: &Metrics, orgs: &[&Metrics]) -> String {
    let mut families: Vec<MetricFamily> = daemon
        .gather()
        .into_iter()
        .filter(|f| daemon_wide(f.name()))
        .collect();
    for org in orgs {
        for family in org.gather() {
            if daemon_wide(family.name()) {
                continue;
            }
            match families.iter_mut().find(|f| f.name() == family.name()) {
                Some(merged) => merged
                    .mut_metric()
                    .extend(family.get_metric().iter().cloned()),
                None => families.push(family),
            }
        }
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    encode(&families)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_organization_counts_under_its_label_and_the_daemon_once() {
        let (daemon, a, b) = (
            Metrics::new(),
            Metrics::for_organization("a"),
            Metrics::for_organization("b"),
        );
        a.polls.inc_by(3);
        b.polls.inc();
        daemon.http_unauthorized.with_label_values(&["admin"]).inc();
        let text = render_organizations(&daemon, &[&a, &b]);
        assert!(
            text.contains("zulip_event_listeners_polls_total{org=\"a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("zulip_event_listeners_polls_total{org=\"b\"} 1"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE zulip_event_listeners_polls_total")
                .count(),
            1
        );
        assert!(
            !text.contains("zulip_event_listeners_polls_total 0"),
            "no unlabelled sample: {text}"
        );
        assert!(
            text.contains("zulip_event_listeners_http_unauthorized_total{route=\"admin\"} 1"),
            "{text}"
        );
        assert_eq!(
            text.matches("zulip_event_listeners_build_info{").count(),
            1,
            "{text}"
        );
    }
}
