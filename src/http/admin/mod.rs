//! The admin API, served only when `[http] admin_token_file` names tokens
//! (every route behind `auth::require_token`): `GET /admin/listeners`,
//! `POST /admin/listeners/{name}/enable|disable|replay` and
//! `GET /admin/deadletters`, JSON in and out. Each call is one audit row
//! under `token:NAME`.
//!
//! - `api`: [`AdminApi`], what the handlers share.
//! - `routes`: the routes and their handlers.
//! - `body`: request bodies (bounded in size and time) and `ApiError`.
//! - `listeners`: listing, enabling and disabling listeners; dead letters.
//! - `replay`: dead letters run again, as the `replay` command does.

mod api;
mod body;
mod listeners;
mod replay;
mod routes;

pub(crate) use api::AdminApi;
pub(crate) use routes::routes;
