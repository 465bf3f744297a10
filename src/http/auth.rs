//! Bearer tokens: [`Tokens`] holds the SHA-256 digest of each named admin
//! token of `[http] admin_token_file`, and [`require_token`] is the
//! middleware in front of the routes that need one. A presented token is
//! hashed and compared with every digest in constant time (`subtle`), so
//! neither the time taken nor the token's length says how close a guess
//! came. The caller's token name reaches the handlers as a [`Caller`].
//!
//! A refused request is counted (`http_unauthorized_total`) and logged at
//! most once per [`WARN_EVERY`], never written to the audit trail: a client
//! without a token must not be able to make the daemon write to its
//! database.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AdminToken;
use crate::state::{now_ms, State};

/// At most one log line about refused requests per this many milliseconds.
const WARN_EVERY: i64 = 10_000;

/// The admin tokens, by name, as digests.
pub(crate) struct Tokens {
    digests: Vec<(Arc<str>, [u8; 32])>,
    state: Arc<State>,
    last_warned_ms: AtomicI64,
    unlogged: AtomicU64,
}

/// The name of the token a request came with.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Arc<str>);

impl Caller {
    /// The audit trail's actor: `token:NAME`.
    pub(crate) fn actor(&self) -> String {
        format!("token:{}", self.0)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// The digests of `tokens`; refusals are counted in `state`'s metrics.
    pub(crate) fn new(tokens: &[AdminToken], state: Arc<State>) -> Tokens {
        Tokens {
            digests: tokens
                .iter()
                .map(|t| (Arc::from(t.name.as_str()), digest(t.secret.expose_secret())))
                .collect(),
            state,
            last_warned_ms: AtomicI64::new(i64::MIN),
            unlogged: AtomicU64::new(0),
        }
    }

    /// The name of the token `presented` is, comparing it with every
    /// token (no early exit) in constant time.
    pub(crate) fn find(&self, presented: &str) -> Option<Arc<str>> {
        let candidate = digest(presented);
        let mut found = None;
        for (name, d) in &self.digests {
            if bool::from(d.ct_eq(&candidate)) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Counts a refused request and logs it, unless one was logged lately.
    fn note_refused(&self, route: &'static str, why: &'static str) {
        self.state
            .metrics
            .http_unauthorized
            .with_label_values(&[route])
            .inc();
        let now = now_ms();
        let last = self.last_warned_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= WARN_EVERY
            && self
                .last_warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due {
            let more = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                route,
                reason = why,
                refused_since_last_line = more,
                "Refused an HTTP request without a valid admin token"
            );
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The metric label of a guarded path (`/ready` is guarded with `/health`).
fn route_label(path: &str) -> &'static str {
    match path {
        "/health" | "/ready" => "health",
        "/metrics" => "metrics",
        _ => "admin",
    }
}

/// Lets the request through with its [`Caller`] when it carries one of
/// the tokens; answers 401 otherwise.
pub(crate) async fn require_token(
    AxumState(tokens): AxumState<Arc<Tokens>>,
    mut request: Request,
    next: Next,
) -> Response {
    let found = bearer(request.headers()).map(|t| tokens.find(t));
    match found {
        Some(Some(name)) => {
            request.extensions_mut().insert(Caller(name));
            next.run(request).await
        }
        refused => {
            let why = if refused.is_none() {
                "no bearer token"
            } else {
                "unknown token"
            };
            tokens.note_refused(route_label(request.uri().path()), why);
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({ "error": format!("{why}: send `Authorization: Bearer TOKEN` with a token of [http] admin_token_file") })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn tokens() -> Tokens {
        let t = |name: &str, secret: &str| AdminToken {
            name: name.to_owned(),
            secret: SecretString::from(secret.to_owned()),
        };
        Tokens::new(
            &[t("ci", "0123456789abcdef"), t("alice", "fedcba9876543210")],
            Arc::new(State::default()),
        )
    }

    #[test]
    fn a_token_is_found_by_its_name_and_nothing_else_is() {
        let tokens = tokens();
        assert_eq!(tokens.find("fedcba9876543210").as_deref(), Some("alice"));
        assert_eq!(tokens.find("0123456789abcdef").as_deref(), Some("ci"));
        assert_eq!(tokens.find("0123456789abcde"), None);
        assert_eq!(tokens.find(""), None);
    }

    #[test]
    fn only_a_bearer_authorization_gives_a_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
