//! [`Client`]: the Zulip endpoints the daemon uses — `POST /register`,
//! `GET /events` (long poll), `DELETE /events`, `GET /users/me` and
//! `GET /messages` — with responses decoded into typed values and failures
//! into [`ZulipError`].

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};

use super::credentials::{api_base_url, Credentials};
use super::error::ZulipError;
use super::payloads::{MessagesPage, RegisterParams, Registration, UserMe};
use super::response::{decode, json, send};
use super::stream::{send_within, EventsStream};

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
        self.untimed(method, path).timeout(timeout)
    }

    /// A request without reqwest's whole-request timeout (which would also
    /// bound reading the body).
    fn untimed(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.email, Some(self.key.expose_secret()))
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
}
