//! Request bodies and error answers of the admin API. A body is read up to
//! [`MAX_BODY`] bytes (413 beyond, without reading the rest when the
//! `Content-Length` says so) within [`BODY_TIMEOUT`] (408 after), so that
//! neither a huge nor a slow request holds a connection slot for long; an
//! empty body is the request's defaults. Every error is a JSON
//! `{"error": "…"}`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::store::StoreError;

/// Largest request body accepted.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Longest wait for a whole request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin call failed, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such listener or event.
    #[error("{0}")]
    NotFound(String),
    /// 408: the body did not arrive in time.
    #[error("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs())]
    Timeout,
    /// 409: the same work is already under way.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is too large.
    #[error("the request body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// 503: the database failed.
    #[error("the database failed: {0}")]
    Store(#[from] StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (code, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// The JSON body of a request, or `T::default()` when it is empty.
///
/// # Errors
///
/// [`ApiError::TooLarge`], [`ApiError::Timeout`], or
/// [`ApiError::BadRequest`] for a body that is not the JSON expected.
pub(crate) async fn read_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::TooLarge);
    }
    let bytes = tokio::time::timeout(BODY_TIMEOUT, collect(body))
        .await
        .map_err(|_| ApiError::Timeout)??;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadRequest(format!("the request body is not the JSON expected: {e}"))
    })
}

/// The body's bytes, up to [`MAX_BODY`].
async fn collect(body: Body) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::BadRequest(format!("the request body could not be read: {e}"))
        })?;
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
