//! Applying a valid reloaded configuration: every running organization's
//! new listener set is built first (each instance, with its templates
//! checked), the store's disabled listeners read, the log level changed;
//! only when all of that worked are the dispatchers' rosters swapped, which
//! cannot fail. A problem anywhere before the swap leaves everything as it
//! runs.

use std::sync::{Arc, OnceLock};

use super::{diff, Reloader};
use crate::config::Config;
use crate::dispatch::filters::Filters;
use crate::dispatch::{Control, Replacement, RetryPolicy};
use crate::listeners::Instance;
use crate::state::{State, OPERATOR_DISABLED};
use crate::telemetry::LevelChange;

/// One organization as a reload sees it: its name, its state, and its
/// dispatcher's controls once it runs.
pub(crate) struct OrgHandle {
    pub(crate) name: String,
    pub(crate) state: Arc<State>,
    /// Set when the organization's dispatcher starts.
    pub(crate) control: Arc<OnceLock<Control>>,
}

/// One organization's new listener set, built, not yet swapped in.
struct Plan<'a> {
    control: &'a Control,
    instances: Vec<Instance>,
    rebuilt: Vec<String>,
    filters: Option<Arc<Filters>>,
    retry: RetryPolicy,
}

/// Applies the live parts of `applied` to every running organization;
/// returns the changes made, or every problem (then nothing changed).
pub(super) async fn apply(r: &Reloader, applied: &Config) -> Result<Vec<String>, Vec<String>> {
    let (plans, mut changes) = plan(r, applied)?;
    if r.listeners.is_some() && r.running.listeners.enabled != applied.listeners.enabled {
        changes.push(
            "listeners.enabled is not used: `run --listeners` chose the instances".to_owned(),
        );
    }
    let disabled: Vec<(String, String)> = r
        .store
        .listener_states()
        .await
        .map_err(|e| {
            vec![format!(
                "cannot read which listeners are disabled from the database: {e}"
            )]
        })?
        .into_iter()
        .filter(|s| !s.enabled)
        .map(|s| {
            let reason = s.reason.unwrap_or_else(|| OPERATOR_DISABLED.to_owned());
            (s.name, reason)
        })
        .collect();
    if r.running.logging.level != applied.logging.level {
        match crate::telemetry::set_level(&applied.logging.level) {
            Ok(LevelChange::Applied | LevelChange::NotInstalled) => {}
            Ok(LevelChange::Overridden) => changes
                .push("logging.level is not used: the RUST_LOG variable sets the level".to_owned()),
            Err(e) => return Err(vec![format!("`logging.level` cannot be applied: {e}")]),
        }
    }
    for plan in plans {
        plan.control.replace(Replacement {
            instances: &plan.instances,
            rebuilt: &plan.rebuilt,
            retry: plan.retry,
            filters: plan.filters,
            disabled: &disabled,
        });
    }
    Ok(changes)
}

/// Every running organization's new listener set, built, and the changes
/// it makes; or every problem found building them.
fn plan<'a>(
    r: &'a Reloader,
    applied: &Config,
) -> Result<(Vec<Plan<'a>>, Vec<String>), Vec<String>> {
    let running_views = r.running.organizations();
    let views = applied.organizations();
    let several = views.len() > 1;
    let find =
        |views: &[Config], name: &str| views.iter().position(|v| v.scaling.instance_id == name);
    let mut problems = Vec::new();
    let mut plans = Vec::new();
    let mut changes = Vec::new();
    for org in &r.orgs {
        if org.state.stopped().is_some() {
            continue;
        }
        let (Some(new), Some(old)) = (find(&views, &org.name), find(&running_views, &org.name))
        else {
            continue;
        };
        let (view, old) = (&views[new], &running_views[old]);
        let Some(control) = org.control.get() else {
            problems.push(format!(
                "organization `{}` is still starting; send SIGHUP again once it runs",
                org.name
            ));
            continue;
        };
        let names = r
            .listeners
            .clone()
            .unwrap_or_else(|| view.listeners.enabled.clone());
        let names = view.listeners.with_fallbacks(&names);
        let instances = match Instance::build_all(&r.registry, view, &names) {
            Ok(instances) => instances,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let before = control.names();
        let after: Vec<String> = instances.iter().map(|i| i.name().to_owned()).collect();
        let whose = match several {
            true => format!("organization {}: ", org.name),
            false => String::new(),
        };
        changes.extend(
            diff::live_changes(old, view, (&before, &after))
                .into_iter()
                .map(|c| format!("{whose}{c}")),
        );
        plans.push(Plan {
            control,
            rebuilt: diff::reconfigured(old, view, &after),
            filters: diff::filters_changed(old, view).then(|| Arc::new(Filters::new(view))),
            retry: RetryPolicy::from_queue(&view.queue),
            instances,
        });
    }
    match problems.is_empty() {
        true => Ok((plans, changes)),
        false => Err(problems),
    }
}
