//! `/ready`: whether the daemon does its job right now, 200 or 503, and
//! when not, which component fails, by name. Read from the state the
//! daemon already keeps (no database round trip, no write per request),
//! so a probe every second costs nothing.
//!
//! The rule:
//! - every organization's intake must be polling Zulip: not starting, not
//!   stopped (a refused key), its requests not failing past
//!   `degraded_after`, and a successful poll within 10 minutes;
//! - the database must be writable: no write is being retried (the inbox
//!   writer and the recorder raise that flag on the first failed write);
//! - the listeners fail readiness only when every listener instance of an
//!   organization is down (its circuit open, or disabled, for whatever
//!   reason): events are then stored but nothing runs. One listener down
//!   while others run is `/health`'s "degraded", not a reason to be
//!   unready: its events wait in the inbox and dead letters for it;
//! - a daemon shutting down is not ready.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;

use super::Health;
use crate::state::State;

/// Past this many seconds without a successful poll, the queue is
/// probably lost (as `/health` judges it).
const LOST_AFTER_SECS: f64 = 600.0;

/// The `/ready` body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Readiness {
    /// Whether nothing fails.
    pub ready: bool,
    /// What fails, by component and name.
    pub failing: Vec<Failing>,
}

/// The kinds of component `/ready` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Component {
    /// The process itself (shutting down).
    Daemon,
    /// An organization's intake.
    Organization,
    /// The database.
    Database,
    /// A listener instance.
    Listener,
}

/// One failing component.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Failing {
    /// What kind of component.
    pub component: Component,
    /// Its name: the organization, the backend, the listener instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For a listener, the organization it runs for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Why it fails.
    pub why: String,
}

impl Failing {
    fn new(component: Component, name: Option<&str>, why: String) -> Failing {
        Failing {
            component,
            name: name.map(str::to_owned),
            organization: None,
            why,
        }
    }
}

impl Health {
    /// The readiness, from live state only.
    pub(crate) fn readiness(&self) -> Readiness {
        let mut failing = Vec::new();
        if self.daemon.draining.load(Ordering::Relaxed) {
            failing.push(Failing::new(
                Component::Daemon,
                None,
                "shutting down".to_owned(),
            ));
        }
        for (name, state) in &self.orgs {
            if let Some(why) = intake_failure(state) {
                failing.push(Failing::new(Component::Organization, Some(name), why));
            }
        }
        let retrying = self
            .orgs
            .iter()
            .any(|(_, s)| s.database_retrying.load(Ordering::Relaxed));
        if let (true, Some(store)) = (retrying, &self.store) {
            failing.push(Failing::new(
                Component::Database,
                Some(store.backend()),
                "writes fail and are being retried".to_owned(),
            ));
        }
        for (name, state) in &self.orgs {
            failing.extend(listeners_all_down(&self.listeners, name, state));
        }
        Readiness {
            ready: failing.is_empty(),
            failing,
        }
    }
}

/// Why an organization's intake is not polling Zulip, if it is not.
fn intake_failure(state: &State) -> Option<String> {
    if let Some(why) = state.stopped() {
        return Some(format!("intake stopped: {why}"));
    }
    if let Some(what) = state.starting() {
        return Some(format!("starting: {what}"));
    }
    let i = &state.intake;
    if !i.polling.load(Ordering::Relaxed) {
        return Some("intake is not polling Zulip".to_owned());
    }
    if i.degraded.load(Ordering::Relaxed) {
        return Some(format!(
            "requests to Zulip have failed for {:.0} s ({} in a row)",
            i.failing_for().unwrap_or_default().as_secs_f64(),
            i.consecutive_failures.load(Ordering::Relaxed)
        ));
    }
    match state.last_poll_age() {
        Some(a) if a > LOST_AFTER_SECS => Some(format!("no successful poll for {a:.0} s")),
        _ => None,
    }
}

/// Each listener instance of organization `org`, when every one of
/// `listeners` is down there; else none.
fn listeners_all_down(listeners: &[String], org: &str, state: &Arc<State>) -> Vec<Failing> {
    let Some(controls) = state.listeners.get() else {
        return Vec::new();
    };
    let disabled = controls.disabled();
    let open = controls.open_circuits();
    let down: Vec<Failing> = listeners
        .iter()
        .filter_map(|listener| {
            let why = match disabled.iter().find(|(n, _)| n == listener) {
                Some((_, why)) => format!("disabled: {why}"),
                None => {
                    let (_, until) = open.iter().find(|(n, _)| n == listener)?;
                    format!("circuit open until {}", until.to_rfc3339())
                }
            };
            Some(Failing {
                organization: Some(org.to_owned()),
                ..Failing::new(Component::Listener, Some(listener), why)
            })
        })
        .collect();
    match !down.is_empty() && down.len() == listeners.len() {
        true => down,
        false => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::state::ListenerControls;

    struct Controls {
        disabled: Mutex<Vec<(String, String)>>,
        open: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    }

    impl ListenerControls for Controls {
        fn disabled(&self) -> Vec<(String, String)> {
            self.disabled.lock().unwrap().clone()
        }
        fn open_circuits(&self) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
            self.open.clone()
        }
        fn set_disabled(&self, _: &str, _: Option<String>) {}
    }

    fn polling() -> Arc<State> {
        let state = Arc::new(State::default());
        state.intake.polling.store(true, Ordering::Relaxed);
        state
    }

    fn health(orgs: Vec<(&str, Arc<State>)>, listeners: &[&str]) -> Arc<Health> {
        let daemon = orgs[0].1.clone();
        Health::new(
            daemon,
            orgs.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(),
            None,
            listeners.iter().map(|l| l.to_string()).collect(),
        )
    }

    #[test]
    fn a_polling_daemon_is_ready() {
        let r = health(vec![("acme", polling())], &["a"]).readiness();
        assert!(r.ready);
        assert!(r.failing.is_empty());
    }

    #[test]
    fn each_organization_not_polling_is_named() {
        let stopped = polling();
        stopped.set_stopped("Zulip refused the API key".to_owned());
        let starting = Arc::new(State::default());
        starting.set_starting(Some("connecting".to_owned()));
        let r = health(
            vec![("acme", polling()), ("beta", stopped), ("gamma", starting)],
            &[],
        )
        .readiness();
        assert!(!r.ready);
        let named: Vec<_> = r
            .failing
            .iter()
            .map(|f| (f.component, f.name.as_deref().unwrap(), f.why.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                (
                    Component::Organization,
                    "beta",
                    "intake stopped: Zulip refused the API key"
                ),
                (Component::Organization, "gamma", "starting: connecting"),
            ]
        );
    }

    #[test]
    fn listeners_fail_readiness_only_when_every_one_is_down() {
        let state = polling();
        let controls = Arc::new(Controls {
            disabled: Mutex::new(vec![("a".to_owned(), "auto-disabled".to_owned())]),
            open: vec![("b".to_owned(), chrono::Utc::now())],
        });
        let _ = state.listeners.set(controls.clone());
        let h = health(vec![("acme", state)], &["a", "b", "c"]);
        assert!(h.readiness().ready, "c still runs");

        controls
            .disabled
            .lock()
            .unwrap()
            .push(("c".to_owned(), "by an operator".to_owned()));
        let r = h.readiness();
        assert!(!r.ready);
        let names: Vec<_> = r.failing.iter().map(|f| f.name.as_deref()).collect();
        assert_eq!(names, [Some("a"), Some("b"), Some("c")]);
        assert!(r.failing.iter().all(
            |f| f.component == Component::Listener && f.organization.as_deref() == Some("acme")
        ));
        assert!(r.failing[1].why.starts_with("circuit open until"));
    }

    #[test]
    fn a_draining_daemon_is_not_ready() {
        let state = polling();
        state.draining.store(true, Ordering::Relaxed);
        let r = health(vec![("acme", state)], &[]).readiness();
        assert_eq!(r.failing[0].component, Component::Daemon);
    }
}
