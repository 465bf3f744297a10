//! `GET /admin/tap`: the tap as a stream of JSON lines
//! (`application/x-ndjson`), one per event entering dispatch
//! (`"kind":"event"`) and per finished run (`"kind":"outcome"`), live,
//! until the client goes, `limit` lines are sent, or the daemon stops.
//! Lines the client did not read in time are dropped by the hub
//! (`crate::tap`), and the stream says how many before its next line
//! (`{"kind":"dropped","lines":N}`).
//!
//! Query: `listener`, `type`, `channel` (a name or an id), `limit` and
//! `show_content`, which is refused (403) unless `[http] tap_show_content`
//! allows it. The route is behind the admin token when there are tokens;
//! without any, it is served only on a loopback address (see `mod.rs`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::auth::Caller;
use crate::tap::{Subscription, Tap, TapFilter};

/// What the tap route serves.
pub(crate) struct TapApi {
    /// The daemon's hub.
    pub(crate) tap: Arc<Tap>,
    /// `[http] tap_show_content`.
    pub(crate) show_content_allowed: bool,
    /// Cancelled when the daemon stops: every stream ends.
    pub(crate) stop: CancellationToken,
}

/// The tap route over `api` (the caller decides whether it needs a token).
pub(crate) fn routes(api: Arc<TapApi>) -> Router {
    Router::new().route("/admin/tap", get(tap)).with_state(api)
}

/// The query of `GET /admin/tap`.
#[derive(Debug, Deserialize)]
struct TapQuery {
    listener: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    channel: Option<String>,
    limit: Option<u64>,
    #[serde(default)]
    show_content: bool,
}

/// `Some` of a non-empty value.
fn given(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

async fn tap(
    AxumState(api): AxumState<Arc<TapApi>>,
    caller: Option<Extension<Caller>>,
    Query(q): Query<TapQuery>,
) -> Response {
    if q.show_content && !api.show_content_allowed {
        let error = "the tap shows content only when the configuration allows it: set `[http] tap_show_content = true`";
        return (StatusCode::FORBIDDEN, Json(json!({ "error": error }))).into_response();
    }
    let filter = TapFilter {
        listener: given(q.listener),
        event_type: given(q.event_type),
        channel: given(q.channel),
    };
    let caller = caller.map(|Extension(c)| c.actor());
    tracing::info!(caller = caller.as_deref().unwrap_or("loopback"), listener = ?filter.listener, event_type = ?filter.event_type, channel = ?filter.channel, limit = ?q.limit, show_content = q.show_content, "Tap started");
    let lines = Lines {
        subscription: api.tap.subscribe(filter),
        left: q.limit,
        show_content: q.show_content,
        stop: api.stop.clone(),
    };
    let body = futures::stream::unfold(lines, |mut lines| async move {
        let line = lines.next().await?;
        Some((Ok::<_, Infallible>(Bytes::from(line)), lines))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

/// One client's stream.
struct Lines {
    subscription: Subscription,
    /// Lines still to send, when limited.
    left: Option<u64>,
    show_content: bool,
    stop: CancellationToken,
}

impl Lines {
    /// The next line, with its newline; `None` at the end of the stream.
    async fn next(&mut self) -> Option<String> {
        if self.left == Some(0) {
            return None;
        }
        let dropped = self.subscription.take_dropped();
        if dropped > 0 {
            return Some(format!("{{\"kind\":\"dropped\",\"lines\":{dropped}}}\n"));
        }
        let item = tokio::select! {
            _ = self.stop.cancelled() => None,
            item = self.subscription.next() => item,
        }?;
        if let Some(n) = &mut self.left {
            *n -= 1;
        }
        let mut line = item.line(self.show_content);
        line.push('\n');
        Some(line)
    }
}
