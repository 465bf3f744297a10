//! [`Client`]: the Zulip endpoints the daemon uses — `POST /register`,
//! `GET /events` (long poll), `DELETE /events`, `GET /users/me` and
//! `GET /messages` — with responses decoded into typed values and failures
//! into [`ZulipError`].

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::credentials::{api_base_url, Credentials};
use super::error::ZulipError;
use crate::event::Event;

/// The long-poll timeout when Zulip does not say (its documented default).
pub const DEFAULT_LONGPOLL_TIMEOUT: Duration = Duration::from_secs(90);

/// An authenticated Zulip API client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    email: String,
    key: SecretString,
    read_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("email", &self.email)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Parameters of `POST /register`.
#[derive(Debug, Clone, Default)]
pub struct RegisterParams {
    /// Event types to queue; `None` for every type.
    pub event_types: Option<Vec<String>>,
    /// `[[operator, operand]]` pairs.
    pub narrow: Vec<(String, String)>,
    /// Messages of every public channel.
    pub all_public_streams: bool,
    /// Rendered HTML instead of Markdown.
    pub apply_markdown: bool,
    /// Requested idle lifetime of the queue; 0 for Zulip's default (10 minutes).
    pub queue_lifespan_secs: u64,
}

/// What `POST /register` returned that the daemon uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    /// The new queue.
    pub queue_id: String,
    /// The id to acknowledge first (`-1`, or the last event folded into the state).
    pub last_event_id: i64,
    /// The server's API feature level.
    #[serde(default)]
    pub zulip_feature_level: i64,
    /// The server version.
    #[serde(default)]
    pub zulip_version: String,
    /// The newest message id at registration.
    #[serde(default)]
    pub max_message_id: Option<i64>,
    /// How long a long poll may take, in seconds.
    #[serde(default)]
    pub event_queue_longpoll_timeout_seconds: Option<u64>,
}

impl Registration {
    /// The HTTP timeout for `GET /events` on this queue.
    pub fn longpoll_timeout(&self) -> Duration {
        self.event_queue_longpoll_timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LONGPOLL_TIMEOUT)
    }
}

/// `GET /users/me`.
#[derive(Debug, Clone, Deserialize)]
pub struct UserMe {
    /// The account's user id.
    pub user_id: i64,
    /// The account's email.
    #[serde(default)]
    pub email: String,
    /// Whether it is a bot.
    #[serde(default)]
    pub is_bot: bool,
    /// Display name.
    #[serde(default)]
    pub full_name: String,
}

/// One page of `GET /messages`.
#[derive(Debug, Deserialize)]
pub struct MessagesPage {
    /// The messages, oldest first, exactly as sent.
    pub messages: Vec<Box<RawValue>>,
    /// Whether the page reaches the newest message.
    #[serde(default)]
    pub found_newest: bool,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    msg: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "retry-after")]
    retry_after: Option<f64>,
    #[serde(default)]
    queue_id: Option<String>,
}

/// The body of one `GET /events` response. Events are materialized chunk
/// by chunk ([`EventsPage::chunk`]), so a large backlog is held once, as
/// the bytes Zulip sent, rather than once more as parsed events.
#[derive(Debug)]
pub struct EventsPage {
    body: bytes::Bytes,
    spans: Vec<(usize, usize)>,
}

impl EventsPage {
    /// Number of events in the page.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the page holds no event.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The events at `range`, in order. An element with an `id` but no
    /// `type` is kept as a `malformed` event; one without even an `id` is
    /// an `Err` with its raw text, for the caller to report.
    pub fn chunk(&self, range: std::ops::Range<usize>) -> Vec<Result<Event, String>> {
        self.spans[range]
            .iter()
            .map(|&(a, b)| {
                let text = std::str::from_utf8(&self.body[a..b]).unwrap_or_default();
                Event::from_wire(text)
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct EventsBody<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

impl Client {
    /// Builds a client for the account in `creds`.
    ///
    /// # Errors
    ///
    /// [`ZulipError::Transport`] when the TLS stack cannot be set up or the
    /// site is not a URL.
    pub fn new(
        creds: &Credentials,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Client, ZulipError> {
        let base = api_base_url(&creds.site).map_err(|e| ZulipError::Transport(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .user_agent(concat!("zulip-event-listeners/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(creds.insecure)
            .tcp_keepalive(Duration::from_secs(30));
        if let Some(bundle) = &creds.cert_bundle {
            let pem = std::fs::read(bundle).map_err(|e| {
                ZulipError::Transport(format!("cannot read {}: {e}", bundle.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ZulipError::Transport(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| ZulipError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            base,
            email: creds.email.clone(),
            key: creds.api_key.clone(),
            read_timeout,
        })
    }

    /// The API base URL, such as `https://chat.example.com/api/v1/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str, timeout: Duration) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.email, Some(self.key.expose_secret()))
            .timeout(timeout)
    }

    /// `POST /register`.
    ///
    /// # Errors
    ///
    /// [`ZulipError`] as the server or network fails.
    pub async fn register(&self, p: &RegisterParams) -> Result<Registration, ZulipError> {
        let narrow: Vec<[&str; 2]> = p
            .narrow
            .iter()
            .map(|(o, a)| [o.as_str(), a.as_str()])
            .collect();
        let mut form: Vec<(&str, String)> = vec![
            ("narrow", json(&narrow)),
            ("all_public_streams", json(&p.all_public_streams)),
            ("apply_markdown", json(&p.apply_markdown)),
            ("client_gravatar", json(&false)),
            // realm: for event_queue_longpoll_timeout_seconds; message: max_message_id.
            ("fetch_event_types", json(&["realm", "message"])),
            (
                "client_capabilities",
                json(&serde_json::json!({
                    "notification_settings_null": true,
                    "bulk_message_deletion": true,
                    "stream_typing_notifications": true,
                    "user_settings_object": true,
                })),
            ),
        ];
        if let Some(types) = &p.event_types {
            form.push(("event_types", json(types)));
        }
        if p.queue_lifespan_secs > 0 {
            form.push(("queue_lifespan_secs", p.queue_lifespan_secs.to_string()));
        }
        let req = self
            .request(Method::POST, "register", self.read_timeout)
            .form(&form);
        decode(send(req).await?).await
    }

    /// `GET /events`: waits up to `timeout` for events after `last_event_id`,
    /// which also acknowledges every event up to it.
    ///
    /// Events are returned in order. An element with an `id` but no `type`
    /// is kept as a `malformed` event; one without even an `id` is returned
    /// as an `Err` with its raw text so the caller can report it.
    ///
    /// # Errors
    ///
    /// [`ZulipError`] as the server or network fails.
    pub async fn get_events(
        &self,
        queue_id: &str,
        last_event_id: i64,
        timeout: Duration,
    ) -> Result<EventsPage, ZulipError> {
        let req = self.request(Method::GET, "events", timeout).query(&[
            ("queue_id", queue_id),
            ("last_event_id", &last_event_id.to_string()),
        ]);
        let resp = send(req).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(error_from(resp).await);
        }
        let body = resp.bytes().await.map_err(transport)?;
        let spans = {
            let parsed: EventsBody<'_> =
                serde_json::from_slice(&body).map_err(|_| ZulipError::NonJson {
                    status: status.as_u16(),
                })?;
            let base = body.as_ptr() as usize;
            parsed
                .events
                .iter()
                .map(|raw| {
                    let start = raw.get().as_ptr() as usize - base;
                    (start, start + raw.get().len())
                })
                .collect()
        };
        Ok(EventsPage { body, spans })
    }

    /// `DELETE /events`: releases a queue.
    ///
    /// # Errors
    ///
    /// [`ZulipError`] as the server or network fails.
    pub async fn delete_queue(&self, queue_id: &str) -> Result<(), ZulipError> {
        let req = self
            .request(Method::DELETE, "events", self.read_timeout)
            .form(&[("queue_id", queue_id)]);
        let _: serde_json::Value = decode(send(req).await?).await?;
        Ok(())
    }

    /// `GET /users/me`.
    ///
    /// # Errors
    ///
    /// [`ZulipError`] as the server or network fails.
    pub async fn users_me(&self) -> Result<UserMe, ZulipError> {
        decode(send(self.request(Method::GET, "users/me", self.read_timeout)).await?).await
    }

    /// `GET /messages`: up to `num_after` messages after `anchor` (excluded).
    ///
    /// # Errors
    ///
    /// [`ZulipError`] as the server or network fails.
    pub async fn messages_after(
        &self,
        anchor: i64,
        num_after: u32,
        narrow: &[(String, String)],
        apply_markdown: bool,
    ) -> Result<MessagesPage, ZulipError> {
        let narrow: Vec<serde_json::Value> = narrow
            .iter()
            .map(|(o, a)| serde_json::json!({"operator": o, "operand": a}))
            .collect();
        let req = self
            .request(Method::GET, "messages", self.read_timeout)
            .query(&[
                ("anchor", anchor.to_string()),
                ("include_anchor", "false".to_owned()),
                ("num_before", "0".to_owned()),
                ("num_after", num_after.to_string()),
                ("narrow", json(&narrow)),
                ("apply_markdown", json(&apply_markdown)),
                ("client_gravatar", "false".to_owned()),
            ]);
        decode(send(req).await?).await
    }
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn transport(e: reqwest::Error) -> ZulipError {
    if e.is_timeout() {
        ZulipError::Timeout
    } else {
        // Without the URL: it is noise in a log line, and never secret, but
        // keeps messages short.
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        ZulipError::Transport(msg)
    }
}

async fn send(req: RequestBuilder) -> Result<Response, ZulipError> {
    req.send().await.map_err(transport)
}

async fn decode<T: DeserializeOwned>(resp: Response) -> Result<T, ZulipError> {
    let status = resp.status();
    if !status.is_success() {
        return Err(error_from(resp).await);
    }
    let body = resp.bytes().await.map_err(transport)?;
    serde_json::from_slice(&body).map_err(|_| ZulipError::NonJson {
        status: status.as_u16(),
    })
}

async fn error_from(resp: Response) -> ZulipError {
    let status = resp.status();
    let header_retry = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return transport(e),
    };
    let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let Some(err) = parsed else {
        return match status {
            StatusCode::TOO_MANY_REQUESTS => ZulipError::RateLimited {
                retry_after: seconds(header_retry.unwrap_or(1.0)),
            },
            _ => ZulipError::NonJson {
                status: status.as_u16(),
            },
        };
    };
    let code = err.code.unwrap_or_else(|| "BAD_REQUEST".to_owned());
    match (status.as_u16(), code.as_str()) {
        (429, _) | (_, "RATE_LIMIT_HIT") => ZulipError::RateLimited {
            retry_after: seconds(header_retry.or(err.retry_after).unwrap_or(1.0)),
        },
        (_, "BAD_EVENT_QUEUE_ID") => ZulipError::QueueGone {
            queue_id: err.queue_id.unwrap_or_default(),
        },
        (401, _) => ZulipError::Unauthorized { code, msg: err.msg },
        (403, _) => ZulipError::Forbidden { code, msg: err.msg },
        (s, _) if s >= 500 => ZulipError::Server {
            status: s,
            msg: err.msg,
        },
        (s, _) => ZulipError::Client {
            status: s,
            code,
            msg: err.msg,
        },
    }
}

/// A `Retry-After` value as a duration; negative or absurd values are clamped.
fn seconds(v: f64) -> Duration {
    if v.is_finite() {
        Duration::from_secs_f64(v.clamp(0.0, 3600.0))
    } else {
        Duration::from_secs(1)
    }
}
