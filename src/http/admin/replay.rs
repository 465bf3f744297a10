//! `POST /admin/listeners/{name}/replay` with an optional
//! `{"since": RFC 3339, "event": INBOX_ID, "org": NAME}`: what `replay
//! --listener NAME [--since] [--event] [--org]` does, in the daemon, through the daemon's own
//! instance of the listener: its pending dead letters (or one logged
//! event) run again one by one, each outcome recorded. One replay at a
//! time (409 while one runs). The answer lists every outcome; runs that
//! failed again are pending dead letters again, and make the audit row's
//! outcome `failed`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State as AxumState};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::api::AdminApi;
use super::body::{read_json, ApiError};
use crate::dispatch::replay::{self, ReplayOutcome, ReplaySettings};
use crate::http::auth::Caller;
use crate::store::{AuditAction, AuditOutcome};

/// The body of a replay, optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    /// Only dead letters created at or after this time.
    since: Option<DateTime<Utc>>,
    /// Only this inbox event; without a dead letter, a logged run of it.
    event: Option<i64>,
    /// The organization whose events to replay; default: the first.
    org: Option<String>,
}

/// The answer of a replay.
#[derive(Debug, Serialize)]
pub(super) struct ReplayReport {
    listener: String,
    replayed: usize,
    succeeded: usize,
    failed: usize,
    outcomes: Vec<OutcomeView>,
}

/// One replayed event.
#[derive(Debug, Serialize)]
struct OutcomeView {
    inbox_id: i64,
    event_type: String,
    dead_letters: Vec<i64>,
    attempts: u32,
    success: bool,
    error: Option<String>,
    duration_ms: f64,
}

impl From<ReplayOutcome> for OutcomeView {
    fn from(o: ReplayOutcome) -> Self {
        OutcomeView {
            inbox_id: o.inbox_id,
            event_type: o.event_type,
            dead_letters: o.dead_letters,
            attempts: o.attempts,
            success: o.success,
            error: o.error,
            duration_ms: o.duration.as_secs_f64() * 1000.0,
        }
    }
}

/// `POST /admin/listeners/{name}/replay`.
pub(super) async fn replay(
    AxumState(api): AxumState<Arc<AdminApi>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReplayReport>, ApiError> {
    let result = run(&api, &name, &headers, body).await;
    api.audit(&caller, AuditAction::Replay, &name, &result, |r| {
        let outcome = if r.failed > 0 {
            AuditOutcome::Failed
        } else {
            AuditOutcome::Ok
        };
        let detail = format!(
            "Replayed {} event(s) through `{name}` over the admin API: {} succeeded, {} failed",
            r.replayed, r.succeeded, r.failed
        );
        (outcome, detail)
    })
    .await;
    result.map(Json)
}

async fn run(
    api: &AdminApi,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<ReplayReport, ApiError> {
    let body: ReplayBody = read_json(headers, body).await?;
    let listener = api.listener(name)?;
    let org = api.organization(body.org.as_deref())?;
    let Ok(_one_at_a_time) = api.replaying.try_acquire() else {
        return Err(ApiError::Conflict(
            "a replay is already running; try again when it is done".to_owned(),
        ));
    };
    let store = api.store.as_ref();
    let items = replay::select(store, org, name, body.since, body.event).await?;
    if let (Some(id), true) = (body.event, items.is_empty()) {
        return Err(ApiError::NotFound(format!(
            "inbox event {id} has no pending dead letter and no logged run of `{name}`; nothing to replay"
        )));
    }
    let settings = ReplaySettings {
        instance: org.to_owned(),
        timeout: listener.timeout,
    };
    let mut outcomes = Vec::with_capacity(items.len());
    for item in &items {
        let outcome = replay::replay_one(store, &listener.listener, item, &settings).await?;
        outcomes.push(OutcomeView::from(outcome));
    }
    let failed = outcomes.iter().filter(|o| !o.success).count();
    Ok(ReplayReport {
        listener: name.to_owned(),
        replayed: outcomes.len(),
        succeeded: outcomes.len() - failed,
        failed,
        outcomes,
    })
}
