//! [`Client`]: the Zulip endpoints the daemon uses — `GET /server_settings`
//! and `POST /register`, `GET /events` (long poll), `DELETE /events`,
//! `GET /users/me`, `GET /users/{id}`, `GET /messages` and `POST /messages`
//! — with responses decoded into typed values and failures into
//! [`ZulipError`]. The rate-limit budget each `GET /events` answer reports
//! is kept for the poll loop's pacing ([`Client::poll_budget`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::{Method, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};

use super::capabilities::{client_capabilities, lifetime_param};
use super::credentials::{api_base_url, Credentials};
use super::error::{ErrorAction, ZulipError};
use super::payloads::{
    Destination, MessagesPage, OutgoingMessage, RegisterParams, Registration, SendError, SentBody,
    ServerSettings, UserBody, UserInfo, UserMe,
};
use super::rate_limit::RateBudget;
use super::response::{decode, error_from, json, send, transport};
use super::stream::{send_within, EventsStream};

/// An authenticated Zulip API client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    email: String,
    key: SecretString,
    read_timeout: Duration,
    /// The server's feature level as last learnt (-1: not yet), shared by
    /// the clones.
    feature_level: Arc<AtomicI64>,
    /// The budget the last `GET /events` answer reported. Polls have a
    /// budget of their own: Zulip's Tornado, which serves them, counts them
    /// apart from the requests Django serves.
    poll_budget: Arc<Mutex<Option<RateBudget>>>,
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
        let builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .user_agent(concat!("zulip-event-listeners/", env!("CARGO_PKG_VERSION")))
            .tcp_keepalive(Duration::from_secs(30));
        let http = creds
            .tls
            .apply(builder, &base)
            .map_err(ZulipError::Transport)?
            .build()
            .map_err(|e| ZulipError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            base,
            email: creds.email.clone(),
            key: creds.api_key.clone(),
            read_timeout,
            feature_level: Arc::new(AtomicI64::new(-1)),
            poll_budget: Arc::default(),
        })
    }

    /// The rate-limit budget the last `GET /events` answer reported, if
    /// it carried Zulip's `X-RateLimit-*` headers.
    pub(crate) fn poll_budget(&self) -> Option<RateBudget> {
        *self.poll_budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the poll budget (after a suspend it says nothing of now).
    pub(crate) fn forget_poll_budget(&self) {
        *self.poll_budget.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn note_poll_budget(&self, headers: &reqwest::header::HeaderMap) {
        let budget =
            RateBudget::from_headers(headers, SystemTime::now(), tokio::time::Instant::now());
        if budget.is_some() {
            *self.poll_budget.lock().unwrap_or_else(|p| p.into_inner()) = budget;
        }
    }

    /// The API base URL, such as `https://chat.example.com/api/v1/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str, timeout: Duration) -> RequestBuilder {
        self.untimed(method, path).timeout(timeout)
    }

    /// A request without reqwest's whole-request timeout (which would also
    /// bound reading the body).
    fn untimed(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.email, Some(self.key.expose_secret()))
    }

    /// `GET /server_settings`: the server's version and feature level.
    ///
    /// # Errors
    ///
    /// [`ZulipError`] as the server or network fails.
    pub async fn server_settings(&self) -> Result<ServerSettings, ZulipError> {
        let req = self.request(Method::GET, "server_settings", self.read_timeout);
        decode(send(req).await?).await
    }

    /// The server's feature level, from `GET /server_settings`; when that
    /// fails (other than by refused credentials or a rate limit, which the
    /// registration would meet too), the level last learnt, if any.
    async fn learn_feature_level(&self) -> Result<Option<i64>, ZulipError> {
        match self.server_settings().await {
            Ok(s) => {
                self.feature_level
                    .store(s.zulip_feature_level, Ordering::Relaxed);
                Ok(Some(s.zulip_feature_level))
            }
            Err(e) if e.is_auth() || matches!(e.action(), ErrorAction::Wait(_)) => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "Cannot read the server's feature level; registering as for Zulip 10.2");
                let known = self.feature_level.load(Ordering::Relaxed);
                Ok((known >= 0).then_some(known))
            }
        }
    }

    /// `POST /register`, declaring the capabilities and asking for the
    /// lifetime the server's feature level knows (see `capabilities.rs`).
    ///
    /// # Errors
    ///
    /// [`ZulipError`] as the server or network fails.
    pub async fn register(&self, p: &RegisterParams) -> Result<Registration, ZulipError> {
        let level = self.learn_feature_level().await?;
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
            ("client_capabilities", json(&client_capabilities(level))),
        ];
        if let Some(types) = &p.event_types {
            form.push(("event_types", json(types)));
        }
        form.extend(lifetime_param(level, p.queue_lifespan_secs));
        let req = self
            .request(Method::POST, "register", self.read_timeout)
            .form(&form);
        let mut reg: Registration = decode(send(req).await?).await?;
        reg.asked_lifetime_secs = p.queue_lifespan_secs;
        self.feature_level
            .store(reg.zulip_feature_level, Ordering::Relaxed);
        Ok(reg)
    }

    /// `GET /events`: waits up to `timeout` for events after `last_event_id`,
    /// which also acknowledges every event up to it.
    ///
    /// The events are read as the body arrives, chunk by chunk, in order
    /// ([`EventsStream::next_chunk`]); each read of the body waits up to
    /// `timeout` too, however long the whole body takes.
    ///
    /// # Errors
    ///
    /// [`ZulipError`] as the server or network fails before the body.
    pub(crate) async fn get_events(
        &self,
        queue_id: &str,
        last_event_id: i64,
        timeout: Duration,
    ) -> Result<EventsStream, ZulipError> {
        let req = self.untimed(Method::GET, "events").query(&[
            ("queue_id", queue_id),
            ("last_event_id", &last_event_id.to_string()),
        ]);
        let resp = send_within(req, timeout).await?;
        self.note_poll_budget(resp.headers());
        EventsStream::open(resp, timeout).await
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

    /// `GET /users/{id}`: another user's account, for whether it is a bot.
    ///
    /// # Errors
    ///
    /// [`ZulipError`] as the server or network fails (a `Client` error for
    /// a user that does not exist).
    pub async fn user(&self, user_id: i64) -> Result<UserInfo, ZulipError> {
        let req = self.request(Method::GET, &format!("users/{user_id}"), self.read_timeout);
        let body: UserBody = decode(send(req).await?).await?;
        Ok(body.user)
    }

    /// `POST /messages`: sends `message` and returns its message id.
    ///
    /// # Errors
    ///
    /// [`SendError`]: the failure, and whether Zulip may have sent the
    /// message anyway (so that the caller looks for its echo before
    /// sending it again).
    pub async fn send_message(&self, message: &OutgoingMessage<'_>) -> Result<i64, SendError> {
        let mut form: Vec<(&str, String)> = match message.to {
            // The legacy names every server version accepts ("channel" and
            // "direct" need feature levels 248 and 174).
            Destination::Channel { channel, topic } => vec![
                ("type", "stream".to_owned()),
                ("to", channel.to_owned()),
                ("topic", topic.to_owned()),
            ],
            Destination::Direct { user_ids } => {
                vec![("type", "private".to_owned()), ("to", json(user_ids))]
            }
        };
        form.push(("content", message.content.to_owned()));
        if let (Some(queue_id), Some(local_id)) = (message.queue_id, message.local_id) {
            form.push(("queue_id", queue_id.to_owned()));
            form.push(("local_id", local_id.to_owned()));
        }
        let req = self
            .request(Method::POST, "messages", self.read_timeout)
            .form(&form);
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                // A connection that never opened cannot have carried the
                // request; anything later may have.
                let maybe_sent = !e.is_connect();
                return Err(SendError {
                    error: transport(e),
                    maybe_sent,
                });
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let error = error_from(resp).await;
            let maybe_sent = status.is_server_error();
            return Err(SendError { error, maybe_sent });
        }
        let body = resp.bytes().await.map_err(|e| SendError {
            error: transport(e),
            maybe_sent: true,
        })?;
        let sent: SentBody = serde_json::from_slice(&body).map_err(|_| SendError {
            error: ZulipError::NonJson {
                status: status.as_u16(),
            },
            maybe_sent: true,
        })?;
        Ok(sent.id)
    }
}
