//! [`Webhook`]: one `kind = "webhook"` instance. A run is one POST: the
//! body (the envelope, or the `zulip_outgoing` payload), `Content-Type:
//! application/json`, the `Idempotency-Key` (the same for every attempt and
//! every re-dispatch of the event), the signature when a secret is set
//! (signed afresh at each attempt), and the configured extra headers. The
//! answer becomes the run's outcome (`outcome.rs`) and, for a 2xx
//! `{"content": …}`, a reply to the event's conversation (`reply.rs`).
//!
//! The run's timeout is the dispatcher's: when it fires, the request is
//! dropped (and its connection closed) and the try counts as transient.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};

use super::outcome::{self, Class, EXCERPT_BYTES};
use super::outgoing;
use super::reply::{self, Answer, MAX_REPLY_BYTES};
use super::signature::{self, Signer};
use crate::config::{WebhookConfig, WebhookFormat};
use crate::event::Event;
use crate::listeners::envelope::envelope;
use crate::listeners::{Context, Listener, ListenerError, Record, Reply, ALL_EVENT_TYPES};

/// The header carrying the run's idempotency key.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// A webhook instance, ready to run.
struct Webhook {
    name: String,
    description: String,
    url: reqwest::Url,
    /// The URL without credentials or query, for messages.
    target: String,
    format: WebhookFormat,
    signer: Option<Signer>,
    /// The `token` of `zulip_outgoing` payloads (empty when not set).
    token: SecretString,
    headers: HeaderMap,
    http: reqwest::Client,
}

/// The webhook instance `name`, sharing `http`.
///
/// # Errors
///
/// A sentence when its secret or token cannot be read, or a header is invalid.
pub(in crate::listeners) fn build(
    name: &str,
    config: &WebhookConfig,
    http: &reqwest::Client,
) -> Result<Arc<dyn Listener>, String> {
    let signer = match &config.secret {
        Some(source) => Some(Signer::new(source.read()?.expose_secret().as_bytes())?),
        None => None,
    };
    let token = match &config.token {
        Some(source) => source.read()?,
        None => SecretString::from(String::new()),
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &config.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("header `{k}` is not a valid name: {e}"))?;
        let value = HeaderValue::from_str(v)
            .map_err(|e| format!("header `{k}` has an invalid value: {e}"))?;
        headers.append(name, value);
    }
    let target = config.redacted_url();
    let description = match config.format {
        WebhookFormat::Event => format!("POSTs every event to {target}"),
        WebhookFormat::ZulipOutgoing => format!(
            "POSTs messages that mention the bot or are sent to it to {target} (Zulip outgoing-webhook format)"
        ),
    };
    Ok(Arc::new(Webhook {
        name: name.to_owned(),
        description,
        url: config.url.clone(),
        target,
        format: config.format,
        signer,
        token,
        headers,
        http: http.clone(),
    }))
}

#[async_trait]
impl Listener for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn event_types(&self) -> &[&str] {
        match self.format {
            WebhookFormat::Event => ALL_EVENT_TYPES,
            // Zulip calls outgoing-webhook bots for messages only.
            WebhookFormat::ZulipOutgoing => &["message"],
        }
    }

    async fn handle(&self, event: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        let body = match self.format {
            WebhookFormat::Event => envelope(&self.name, event, ctx),
            WebhookFormat::ZulipOutgoing => {
                match outgoing::payload(event, ctx, self.token.expose_secret())? {
                    Some(body) => body,
                    // Zulip would not call the bot for it: nothing to send.
                    None => return Ok(Vec::new()),
                }
            }
        };
        let answer = self.post(body, &ctx.idempotency_key(event)).await?;
        Ok(self.records(event, ctx, answer))
    }
}

impl Webhook {
    /// POSTs `body` once and reads the answer.
    async fn post(&self, body: String, key: &str) -> Result<Answer, ListenerError> {
        let key = HeaderValue::from_str(key).map_err(|_| {
            ListenerError::permanent(format!(
                "the idempotency key {key:?} cannot be sent as a header"
            ))
        })?;
        let mut request = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(IDEMPOTENCY_KEY, key);
        if let Some(signer) = &self.signer {
            let now = chrono::Utc::now().timestamp();
            request = request.header(signature::HEADER, signer.sign(now, body.as_bytes()));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| outcome::transport(&self.target, e))?;
        let status = response.status();
        if outcome::classify(status) != Class::Success {
            let headers = response.headers().clone();
            // The excerpt is best effort: a body that cannot be read leaves it empty.
            let (body, _) = outcome::read_capped(response, EXCERPT_BYTES + 1)
                .await
                .unwrap_or_default();
            return Err(outcome::failure(status, &headers, &self.target, &body));
        }
        // The receiver has the event; a body cut off in transit may have
        // held a reply, so the try is retried rather than its reply lost.
        let (body, cut) = outcome::read_capped(response, MAX_REPLY_BYTES)
            .await
            .map_err(|e| outcome::transport(&self.target, e))?;
        if cut {
            return Ok(Answer::Unusable("its body is longer than 256 KiB"));
        }
        Ok(reply::read(
            &body,
            self.format == WebhookFormat::ZulipOutgoing,
        ))
    }

    /// The records of a delivered run: its reply, if any.
    fn records(&self, event: &Event, ctx: &Context, answer: Answer) -> Vec<Record> {
        let content = match answer {
            Answer::Nothing => return Vec::new(),
            Answer::Unusable(why) => {
                tracing::warn!(listener = %self.name, inbox_id = ctx.inbox_id, why, "The webhook's answer cannot be a reply; the event is delivered, no reply is sent");
                return Vec::new();
            }
            Answer::Reply(content) => content,
        };
        let bot_id = ctx.bot.as_ref().map(|b| b.user_id).or(ctx.bot_user_id);
        let sender = event.message().map(|m| m.sender_id);
        if sender.is_some() && sender == bot_id {
            // Answering the bot's own message would answer the answer, and so on.
            tracing::warn!(listener = %self.name, inbox_id = ctx.inbox_id, "The webhook replied to the bot's own message; the reply is dropped to avoid a loop");
            return Vec::new();
        }
        match Reply::to_event(event, content) {
            Some(reply) => vec![Record::Reply(reply)],
            None => {
                tracing::warn!(listener = %self.name, inbox_id = ctx.inbox_id, event_type = event.event_type(), "The webhook replied to an event that is not a message; there is no conversation to answer in");
                Vec::new()
            }
        }
    }
}
