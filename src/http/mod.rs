//! The HTTP server: `GET /health` (JSON; 200 when healthy or degraded, 503
//! when starting, unhealthy or draining), `GET /ready` (200, or 503 naming
//! the failing components; guarded as `/health` is), `GET /metrics` (Prometheus
//! text), the tap (`GET /admin/tap`, `tap.rs`) and, with admin tokens, the
//! admin API (`admin/`), the routes that need a token behind
//! `auth::require_token`; all behind an accept loop
//! that slow or numerous clients cannot exhaust.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod health;
pub(crate) mod tap;

use admin::AdminApi;
use auth::Tokens;
use health::{Health, Readiness, Status};
use tap::TapApi;

/// Who may call what.
pub(crate) struct Access {
    /// The admin tokens; `None` leaves the admin API out.
    pub(crate) tokens: Option<Arc<Tokens>>,
    /// `/health` needs a token.
    pub(crate) health: bool,
    /// `/metrics` needs a token.
    pub(crate) metrics: bool,
    /// Without tokens, `GET /admin/tap` is served all the same (the server
    /// listens on a loopback address only).
    pub(crate) tap_without_token: bool,
}

/// The router: `/health` (and `/ready`) and `/metrics` over `health` (which also holds
/// the metrics), the admin API when there are tokens and an `admin`, and
/// the tap behind the tokens, or open when `access.tap_without_token`.
/// Only matched routes pass the token check, so an unknown path is a 404
/// with a token or without. (Without tokens, `access.health` and
/// `access.metrics` cannot be set: the configuration refuses it.)
pub(crate) fn router(
    health: Arc<Health>,
    access: Access,
    admin: Option<Arc<AdminApi>>,
    tap: Arc<TapApi>,
) -> Router {
    let tokens = access.tokens;
    let guard = |on: bool| on && tokens.is_some();
    let mut open = Router::new();
    let mut guarded = Router::new();
    for (route, guarded_route) in [
        (
            Router::new()
                .route("/health", get(get_health))
                .route("/ready", get(get_ready)),
            guard(access.health),
        ),
        (
            Router::new().route("/metrics", get(get_metrics)),
            guard(access.metrics),
        ),
    ] {
        let route = route.with_state(health.clone());
        if guarded_route {
            guarded = guarded.merge(route);
        } else {
            open = open.merge(route);
        }
    }
    let Some(tokens) = tokens else {
        return match access.tap_without_token {
            true => open.merge(tap::routes(tap)),
            false => open,
        };
    };
    guarded = guarded.merge(tap::routes(tap));
    if let Some(admin) = admin {
        guarded = guarded.merge(admin::routes(admin));
    }
    open.merge(guarded.route_layer(from_fn_with_state(tokens, auth::require_token)))
}

async fn get_health(AxumState(health): AxumState<Arc<Health>>) -> Response {
    let report = health.report().await;
    let code = match report.status {
        Status::Healthy | Status::Degraded => StatusCode::OK,
        Status::Starting | Status::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(report)).into_response()
}

async fn get_ready(AxumState(health): AxumState<Arc<Health>>) -> Response {
    let readiness: Readiness = health.readiness();
    let code = match readiness.ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(readiness)).into_response()
}

async fn get_metrics(AxumState(health): AxumState<Arc<Health>>) -> Response {
    // Only what is computed from live state: a scrape never waits on the
    // database (the health report's ping does, for up to 2 s).
    health.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        health.metrics_text(),
    )
        .into_response()
}

/// Serves `app` on `listener` until `token` is cancelled, then finishes the requests
/// in progress. Its own accept loop bounds what clients can hold: at most
/// `limits.max_connections` connections at once (more wait in the kernel's
/// backlog, holding no descriptor of the daemon's, so Zulip and the
/// database always have theirs), and a connection whose request headers
/// take longer than `limits.header_read_timeout` is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    token: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, or a connection reset before accept:
                // wait a little rather than spin.
                tracing::warn!(error = %e, "Cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (app, token, timeout) = (app.clone(), token.clone(), limits.header_read_timeout);
        connections.spawn(async move {
            let _slot = slot;
            let service = TowerToHyperService::new(app);
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// The bounds of the HTTP server (`[http]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// Longest wait for a request's headers.
    pub(crate) header_read_timeout: Duration,
}
