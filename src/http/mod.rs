//! The HTTP server: `GET /health` (JSON; 200 when healthy or degraded, 503
//! when starting, unhealthy or draining) and `GET /metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(crate) mod health;

use health::{Health, Status};

/// The router over `health` (which also holds the metrics).
pub(crate) fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/health", get(get_health))
        .route("/metrics", get(get_metrics))
        .with_state(health)
}

async fn get_health(AxumState(health): AxumState<Arc<Health>>) -> Response {
    let report = health.report().await;
    let code = match report.status {
        Status::Healthy | Status::Degraded => StatusCode::OK,
        Status::Starting | Status::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(report)).into_response()
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

/// Serves `listener` until `token` is cancelled, then finishes the requests
/// in progress.
pub(crate) async fn serve(listener: TcpListener, health: Arc<Health>, token: CancellationToken) {
    let app = router(health);
    let shutdown = async move { token.cancelled().await };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "The HTTP server stopped");
    }
}
