//! [`Instance`]: one configured listener instance, ready to run: the
//! listener (a registered one, possibly renamed, or one built from a
//! configurable kind) with its own timeout, concurrency bound, retry
//! policy and fallback. [`Instance::build_all`] turns `[listeners]` into them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::listener::{Context, DryRun, Listener, ListenerError, Record};
use super::payload_limit::Truncated;
use super::registry::{Registry, RegistryError};
use super::{exec, responder, webhook};
use crate::config::{Config, ListenerInstanceConfig, ListenerKind, RetryConfig};
use crate::event::Event;

/// A listener instance and the bounds of its runs.
#[derive(Clone)]
pub struct Instance {
    /// The listener; its `name()` is the instance's name.
    pub listener: Arc<dyn Listener>,
    /// `message_logger`, `webhook`, …
    pub kind: String,
    /// Where it sends its work, for `list` (secrets redacted).
    pub target: String,
    /// Upper bound of one run (the daemon's `handler_timeout` when `None`).
    pub timeout: Option<Duration>,
    /// Its runs in flight at once, at most (`None`: the daemon's bound only).
    pub max_concurrent: Option<usize>,
    /// Its retry policy (`[queue]`'s when `None`).
    pub retry: Option<RetryConfig>,
    /// The instance that gets the events its runs fail for the last time
    /// (`[listeners.NAME] fallback`).
    pub fallback: Option<String>,
}

/// Why the instances cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// A name that is neither configured nor registered.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A configured instance that cannot be built (an unreadable secret, a
    /// template that does not compile, …).
    #[error("listener `{name}` cannot be built: {reason}")]
    Build {
        /// The instance.
        name: String,
        /// Why.
        reason: String,
    },
}

impl Instance {
    /// A registered listener under its own name, with the daemon's bounds.
    pub fn plain(listener: Arc<dyn Listener>) -> Instance {
        Instance {
            kind: listener.name().to_owned(),
            target: "built in".to_owned(),
            listener,
            timeout: None,
            max_concurrent: None,
            retry: None,
            fallback: None,
        }
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        self.listener.name()
    }

    /// Whether one of `instances` names this one as its fallback: then it
    /// runs only as a fallback, and no event is routed to it directly.
    pub fn is_fallback_of_any(&self, instances: &[Instance]) -> bool {
        instances
            .iter()
            .any(|i| i.fallback.as_deref() == Some(self.name()))
    }

    /// The instances called `names`, in that order, as `config` defines
    /// them (a name without a table is the registered listener of that name).
    ///
    /// # Errors
    ///
    /// [`InstanceError`] for the first that is unknown or cannot be built.
    pub fn build_all(
        registry: &Registry,
        config: &Config,
        names: &[String],
    ) -> Result<Vec<Instance>, InstanceError> {
        let http = webhook::http_client(config).map_err(|reason| InstanceError::Build {
            name: names.join(","),
            reason,
        })?;
        names
            .iter()
            .map(|name| {
                let ic = config.listeners.instance(name);
                if !config.listeners.instances.contains_key(name) && registry.get(name).is_none() {
                    return Err(InstanceError::Registry(RegistryError::Unknown {
                        name: name.clone(),
                        available: config.listeners.names(&registry.names()).join(", "),
                    }));
                }
                Instance::build(registry, config, &ic, &http)
            })
            .collect()
    }

    fn build(
        registry: &Registry,
        config: &Config,
        ic: &ListenerInstanceConfig,
        http: &reqwest::Client,
    ) -> Result<Instance, InstanceError> {
        let fail = |reason: String| InstanceError::Build {
            name: ic.name.clone(),
            reason,
        };
        let listener: Arc<dyn Listener> = match &ic.kind {
            ListenerKind::Registered(kind) => {
                let inner = registry
                    .get(kind)
                    .cloned()
                    .ok_or_else(|| RegistryError::Unknown {
                        name: kind.clone(),
                        available: registry.names().join(", "),
                    })?;
                if inner.name() == ic.name {
                    inner
                } else {
                    Arc::new(Renamed {
                        name: ic.name.clone(),
                        inner,
                    })
                }
            }
            ListenerKind::Webhook(w) => payloads_cut(
                config,
                webhook::build(&ic.name, w, http, config.file_permissions).map_err(fail)?,
            ),
            ListenerKind::Exec(e) => payloads_cut(
                config,
                exec::build(&ic.name, e, ic.max_concurrent).map_err(fail)?,
            ),
            ListenerKind::Responder(r) => responder::build(&ic.name, r, config).map_err(fail)?,
        };
        let defaults = RetryConfig::from_queue(&config.queue);
        Ok(Instance {
            listener,
            kind: ic.kind.name().to_owned(),
            target: ic.kind.target(),
            timeout: ic.timeout,
            max_concurrent: ic.max_concurrent,
            retry: ic.retry.map(|r| r.over(defaults)),
            fallback: ic.fallback.clone(),
        })
    }
}

/// `listener` (a webhook or exec instance), receiving events cut to
/// `[data_protection] max_content_length` when `truncate_payloads` is on.
fn payloads_cut(config: &Config, listener: Arc<dyn Listener>) -> Arc<dyn Listener> {
    let dp = &config.data_protection;
    match dp.max_content_length.filter(|_| dp.truncate_payloads) {
        Some(max) => Arc::new(Truncated {
            inner: listener,
            max,
        }),
        None => listener,
    }
}

/// A registered listener run under another instance name (two
/// `message_logger` instances with different filters, say).
struct Renamed {
    name: String,
    inner: Arc<dyn Listener>,
}

#[async_trait]
impl Listener for Renamed {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        self.inner.description()
    }

    fn event_types(&self) -> &[&str] {
        self.inner.event_types()
    }

    async fn handle(&self, event: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        self.inner.handle(event, ctx).await
    }

    fn dry_run(&self, event: &Event, ctx: &Context) -> DryRun {
        self.inner.dry_run(event, ctx)
    }
}
