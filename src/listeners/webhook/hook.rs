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
use crate::config::{FilePermissions, SecretSource, WebhookConfig, WebhookFormat};
use crate::event::Event;
use crate::listeners::envelope::envelope;
use crate::listeners::{
    BotIdentity, Context, DryRun, Listener, ListenerError, Record, Reply, ALL_EVENT_TYPES,
};

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
    permissions: FilePermissions,
) -> Result<Arc<dyn Listener>, String> {
    let read = |source: &SecretSource| source.read(permissions).map_err(|e| e.to_string());
    let signer = match &config.secret {
        Some(source) => Some(Signer::new(read(source)?.expose_secret().as_bytes())?),
        None => None,
    };
    let token = match &config.token {
        Some(source) => read(source)?,
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
        let Some(body) = self.body(event, ctx)? else {
            // Zulip would not call the bot for it: nothing to send.
            return Ok(Vec::new());
        };
        let answer = self.post(body, &ctx.idempotency_key(event)).await?;
        Ok(self.records(event, ctx, answer))
    }

    /// `test --run --dry`: the request it would send, body included.
    fn dry_run(&self, event: &Event, ctx: &Context) -> DryRun {
        // `test` does not ask Zulip who the bot is: name it by its role.
        let mut ctx = ctx.clone();
        if ctx.bot.is_none() {
            ctx.bot = Some(Arc::new(BotIdentity {
                user_id: ctx.bot_user_id.unwrap_or(-1),
                email: "<the bot's email>".to_owned(),
                full_name: "<the bot's name>".to_owned(),
            }));
        }
        DryRun::Describe(match self.body(event, &ctx) {
            Ok(Some(body)) => format!(
                "POST to {} (Idempotency-Key: {}{}): {body}",
                self.target,
                ctx.idempotency_key(event),
                if self.signer.is_some() {
                    ", signed"
                } else {
                    ""
                }
            ),
            Ok(None) => {
                "send nothing (Zulip would not call an outgoing-webhook bot for this event)"
                    .to_owned()
            }
            Err(e) => format!("fail: {e}"),
        })
    }
}

impl Webhook {
    /// The request body for `event`; `None` when nothing is to be sent.
    fn body(&self, event: &Event, ctx: &Context) -> Result<Option<String>, ListenerError> {
        match self.format {
            WebhookFormat::Event => Ok(Some(envelope(&self.name, event, ctx))),
            WebhookFormat::ZulipOutgoing => {
                outgoing::payload(event, ctx, self.token.expose_secret())
            }
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(format: WebhookFormat) -> Arc<dyn Listener> {
        let config = WebhookConfig {
            url: "https://user:pw@hooks.example.com/zulip?key=s3cret"
                .parse()
                .unwrap(),
            format,
            secret: None,
            token: None,
            headers: vec![("X-Team".into(), "ops".into())],
        };
        build(
            "hook",
            &config,
            &reqwest::Client::new(),
            FilePermissions::Enforce,
        )
        .unwrap()
    }

    fn ctx() -> Context {
        Context {
            org: Arc::from("o"),
            inbox_id: 4,
            bot_user_id: Some(9),
            attempt: 1,
            bot: None,
            received_at: None,
            fallback_of: None,
        }
    }

    #[test]
    fn a_dry_run_prints_the_request_without_the_urls_secrets() {
        let event = Event::parse(r#"{"type":"message","message":{"id":5,"sender_id":7,"display_recipient":"ops","subject":"t","content":"hi"},"flags":[],"id":1}"#).unwrap();

        let DryRun::Describe(what) = webhook(WebhookFormat::Event).dry_run(&event, &ctx()) else {
            panic!("a webhook describes its request");
        };

        assert!(what.starts_with("POST to https://hooks.example.com/zulip?… (Idempotency-Key: o:message:5): {\"listener\":\"hook\""), "{what}");
        assert!(!what.contains("s3cret") && !what.contains("pw"), "{what}");
        let outgoing = webhook(WebhookFormat::ZulipOutgoing);
        assert_eq!(
            outgoing.dry_run(&event, &ctx()),
            DryRun::Describe(
                "send nothing (Zulip would not call an outgoing-webhook bot for this event)".into()
            )
        );
        assert_eq!(outgoing.event_types(), &["message"]);
    }
}
