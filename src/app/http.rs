//! The HTTP server assembled: the admin tokens read (a bad token file
//! stops the start), `/health` and `/metrics` guarded as `[http]` asks,
//! the admin API over the store and the daemon's instances, the tap
//! (behind the tokens; without any, only on a loopback address), and the
//! listening socket bound, served as a service.

use std::net::SocketAddr;
use std::sync::Arc;

use super::services::Services;
use super::AppError;
use crate::config::{read_admin_tokens, Config};
use crate::http::admin::AdminApi;
use crate::http::auth::Tokens;
use crate::http::health::Health;
use crate::http::tap::TapApi;
use crate::http::{router, Access, Limits};
use crate::listeners::Instance;
use crate::state::State;
use crate::store::{AuditTrail, Store};

/// What the HTTP server serves.
pub(super) struct HttpParts<'a> {
    pub(super) config: &'a Config,
    /// The daemon's state (with one organization, that one's).
    pub(super) state: &'a Arc<State>,
    /// Each organization's name and state.
    pub(super) orgs: Vec<(String, Arc<State>)>,
    /// `None` in a dry run: no admin API then.
    pub(super) store: Option<&'a Arc<dyn Store>>,
    pub(super) instances: &'a [Instance],
}

/// Binds `addr` (port 0 picks a free one) and serves `/health`, `/metrics`
/// and, with admin tokens, the admin API as a service. Returns the bound
/// address.
///
/// # Errors
///
/// [`AppError::AdminTokens`] for a token file that cannot be used,
/// [`AppError::Http`] when the address cannot be bound.
pub(super) async fn serve_http(
    addr: SocketAddr,
    parts: HttpParts<'_>,
    services: &Services,
) -> Result<SocketAddr, AppError> {
    let HttpParts {
        config,
        state,
        orgs,
        store,
        instances,
    } = parts;
    // The admin API replays one organization's events, the first one's
    // unless the body names another.
    let org_names: Vec<String> = match orgs.is_empty() {
        true => vec![config.scaling.instance_id.clone()],
        false => orgs.iter().map(|(n, _)| n.clone()).collect(),
    };
    let tokens = match &config.http.admin_token_file {
        Some(path) => Some(read_admin_tokens(path, config.file_permissions)?),
        None => None,
    };
    if tokens.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(address = %addr, "/health and /metrics are served beyond this host without any token: set [http] admin_token_file (and health_requires_token, metrics_requires_token), or bind to 127.0.0.1");
    }
    let names = instances.iter().map(|i| i.listener.name().to_owned());
    let health = Health::new(state.clone(), orgs, store.cloned(), names.collect());
    let admin = match (&tokens, store) {
        (Some(_), Some(store)) => Some(Arc::new(AdminApi::new(
            store.clone(),
            AuditTrail::new(store.clone(), config.data_protection.audit_trail),
            state.clone(),
            instances,
            org_names,
            config.performance.handler_timeout,
        ))),
        (Some(_), None) => {
            tracing::info!("No admin API in a dry run: there is no database to change");
            None
        }
        (None, _) => None,
    };
    let serves_admin = admin.is_some();
    let access = Access {
        tokens: tokens.map(|t| Arc::new(Tokens::new(&t, state.clone()))),
        health: config.http.health_requires_token,
        metrics: config.http.metrics_requires_token,
        tap_without_token: addr.ip().is_loopback(),
    };
    let tap = Arc::new(TapApi {
        tap: state.tap.clone(),
        show_content_allowed: config.http.tap_show_content,
        stop: services.token(),
    });
    let app = router(health.clone(), access, admin, tap);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Http(addr, e))?;
    let local = listener.local_addr().map_err(|e| AppError::Http(addr, e))?;
    services.spawn(health.sample_until(services.token()));
    let limits = Limits {
        max_connections: config.http.max_connections,
        header_read_timeout: config.http.header_read_timeout,
    };
    services.spawn(crate::http::serve(listener, app, limits, services.token()));
    tracing::info!(address = %local, admin_api = serves_admin, "Serving /health and /metrics");
    Ok(local)
}
