//! `GET /admin/listeners`, `POST /admin/listeners/{name}/enable|disable`
//! and `GET /admin/deadletters`. A switch is written to the store (with
//! its audit row, in one transaction) and applied to the running
//! dispatcher at once; the state sync would apply it within seconds
//! anyway, and applies it to the other daemons on the same database.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api::AdminApi;
use super::body::{read_json, ApiError};
use crate::http::auth::Caller;
use crate::state::OPERATOR_DISABLED;
use crate::store::{AuditAction, AuditOutcome};

/// Dead letters listed when no `limit` is given.
const DEFAULT_LIMIT: u32 = 100;
/// Most dead letters listed at once.
const MAX_LIMIT: u32 = 1000;

/// One listener in `GET /admin/listeners`.
#[derive(Debug, Serialize)]
struct ListenerView {
    name: String,
    kind: String,
    /// As stored by `enable` / `disable` (true when never switched).
    enabled: bool,
    /// Why it was disabled.
    reason: Option<String>,
    /// Who switched it last, and when.
    changed_by: Option<String>,
    changed_at: Option<DateTime<Utc>>,
    /// Why the dispatcher skips it now (a disable, stored or automatic).
    disabled_now: Option<String>,
    /// When its open circuit lets one trial run through.
    circuit_open_until: Option<DateTime<Utc>>,
}

/// `GET /admin/listeners`.
pub(super) async fn list(
    AxumState(api): AxumState<Arc<AdminApi>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let result = views(&api).await;
    api.audit(
        &caller,
        AuditAction::ListListeners,
        "/admin/listeners",
        &result,
        |v| (AuditOutcome::Ok, format!("{} listener(s)", v.len())),
    )
    .await;
    Ok(Json(json!({ "listeners": result? })))
}

async fn views(api: &AdminApi) -> Result<Vec<ListenerView>, ApiError> {
    let mut stored: HashMap<String, _> = api
        .store
        .listener_states()
        .await?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let (disabled, open): (HashMap<_, _>, HashMap<_, _>) = match api.state.listeners.get() {
        Some(c) => (
            c.disabled().into_iter().collect(),
            c.open_circuits().into_iter().collect(),
        ),
        None => Default::default(),
    };
    Ok(api
        .listeners
        .iter()
        .map(|(name, l)| {
            let s = stored.remove(name);
            ListenerView {
                name: name.clone(),
                kind: l.kind.clone(),
                enabled: s.as_ref().is_none_or(|s| s.enabled),
                reason: s.as_ref().and_then(|s| s.reason.clone()),
                changed_by: s.as_ref().map(|s| s.changed_by.clone()),
                changed_at: s.as_ref().map(|s| s.changed_at),
                disabled_now: disabled.get(name).cloned(),
                circuit_open_until: open.get(name).copied(),
            }
        })
        .collect())
}

/// The body of `enable` and `disable`, optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SwitchBody {
    /// Why (for `disable`), shown by `list` and `/health`.
    reason: Option<String>,
}

/// `POST /admin/listeners/{name}/enable`.
pub(super) async fn enable(
    AxumState(api): AxumState<Arc<AdminApi>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    switch(&api, &caller, &name, true, &headers, body).await
}

/// `POST /admin/listeners/{name}/disable` with an optional `{"reason": …}`.
pub(super) async fn disable(
    AxumState(api): AxumState<Arc<AdminApi>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    switch(&api, &caller, &name, false, &headers, body).await
}

async fn switch(
    api: &AdminApi,
    caller: &Caller,
    name: &str,
    enabled: bool,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.actor();
    let result = async {
        let body: SwitchBody = read_json(headers, body).await?;
        api.listener(name)?;
        let reason = body.reason.filter(|r| !enabled && !r.trim().is_empty());
        api.store
            .set_listener_enabled(
                name,
                enabled,
                reason.as_deref(),
                &actor,
                api.audit.enabled(),
            )
            .await?;
        if let Some(controls) = api.state.listeners.get() {
            let why = reason
                .clone()
                .unwrap_or_else(|| OPERATOR_DISABLED.to_owned());
            controls.set_disabled(name, (!enabled).then_some(why));
        }
        Ok(json!({ "listener": name, "enabled": enabled, "reason": reason, "by": actor }))
    }
    .await;
    // A switch that succeeded wrote its audit row with it.
    if result.is_err() {
        let action = if enabled {
            AuditAction::Enable
        } else {
            AuditAction::Disable
        };
        api.audit(caller, action, name, &result, |_| {
            (AuditOutcome::Ok, String::new())
        })
        .await;
    }
    result.map(Json)
}

/// The query of `GET /admin/deadletters`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeadLetterQuery {
    /// Only this listener's.
    listener: Option<String>,
    /// How many, newest first (default 100, at most 1000).
    limit: Option<u32>,
}

/// `GET /admin/deadletters[?listener=NAME][&limit=N]`: pending dead
/// letters, newest first.
pub(super) async fn dead_letters(
    AxumState(api): AxumState<Arc<AdminApi>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let result = async {
        let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "`limit` must be from 1 to {MAX_LIMIT}, got {limit}"
            )));
        }
        let rows = api
            .store
            .pending_dead_letters(q.listener.as_deref(), limit)
            .await?;
        Ok((q.listener, limit, rows))
    }
    .await;
    api.audit(
        &caller,
        AuditAction::ListDeadLetters,
        "/admin/deadletters",
        &result,
        |(listener, limit, rows)| {
            let of = listener
                .as_ref()
                .map_or(String::new(), |l| format!(" of {l}"));
            (
                AuditOutcome::Ok,
                format!("{} pending dead letter(s){of} (limit {limit})", rows.len()),
            )
        },
    )
    .await;
    let (_, limit, rows) = result?;
    Ok(Json(json!({ "dead_letters": rows, "limit": limit })))
}
