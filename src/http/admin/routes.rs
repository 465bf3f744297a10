//! The `/admin` routes and the handler each leads to.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use super::api::AdminApi;
use super::{listeners, replay};

/// The `/admin` routes over `api` (the caller puts them behind the token
/// check).
pub(crate) fn routes(api: Arc<AdminApi>) -> Router {
    Router::new()
        .route("/admin/listeners", get(listeners::list))
        .route("/admin/listeners/{name}/enable", post(listeners::enable))
        .route("/admin/listeners/{name}/disable", post(listeners::disable))
        .route("/admin/listeners/{name}/replay", post(replay::replay))
        .route("/admin/deadletters", get(listeners::dead_letters))
        .with_state(api)
}
