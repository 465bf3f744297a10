//! [`Envelope`]: one committed inbox event as a RabbitMQ message, and
//! back. The body is the event's JSON exactly as stored (so a worker
//! rebuilds the same [`Event`] the single process would dispatch); the
//! headers carry what the inbox row adds: its id, the event's queue id,
//! whether it was backfilled, when it was stored, the organization, and
//! the leader epoch that published it. `message_id` is the inbox id, so a
//! republished event is recognisably the same message.
//!
//! The body is the event in clear: use `amqps://` and the vhost's
//! permissions where the broker is not on a trusted network.

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use serde_json::value::RawValue;

use crate::event::Event;
use crate::store::StoredEvent;

/// Why a delivery is not an event of this daemon.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    /// A header is missing or of the wrong type.
    #[error("the message has no {0} header (not published by this daemon)")]
    Header(&'static str),
    /// The body is not the event's JSON.
    #[error("the message body is not an event: {0}")]
    Body(String),
}

const INBOX_ID: &str = "zel-inbox-id";
const EVENT_ID: &str = "zel-event-id";
const BACKFILLED: &str = "zel-backfilled";
const RECEIVED_AT: &str = "zel-received-at-us";
const ORG: &str = "zel-org";
const EPOCH: &str = "zel-epoch";

/// A message's body and properties.
pub(crate) struct Envelope {
    pub(crate) body: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

/// What a delivery carries, decoded.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) stored: StoredEvent,
    /// The organization (instance) whose inbox holds it.
    pub(crate) org: String,
    /// The leader epoch that published it.
    pub(crate) epoch: i64,
}

impl Envelope {
    /// The message for `stored`, of organization `org`, published by the
    /// leader of `epoch`: persistent (delivery mode 2), JSON.
    pub(crate) fn seal(stored: &StoredEvent, org: &str, epoch: i64) -> Envelope {
        let mut headers = FieldTable::default();
        let mut put = |k: &str, v: AMQPValue| {
            headers.insert(ShortString::from(k), v);
        };
        put(INBOX_ID, AMQPValue::LongLongInt(stored.inbox_id));
        put(EVENT_ID, AMQPValue::LongLongInt(stored.event.id()));
        put(BACKFILLED, AMQPValue::Boolean(stored.event.is_backfilled()));
        put(
            RECEIVED_AT,
            AMQPValue::LongLongInt(stored.received_at.timestamp_micros()),
        );
        put(ORG, AMQPValue::LongString(LongString::from(org)));
        put(EPOCH, AMQPValue::LongLongInt(epoch));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(stored.inbox_id.to_string()))
            .with_type(ShortString::from(stored.event.event_type()))
            .with_headers(headers);
        Envelope {
            body: stored.event.raw().as_bytes().to_vec(),
            properties,
        }
    }

    /// The event a delivery with `body` and `properties` carries.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] when it was not sealed by [`Envelope::seal`].
    pub(crate) fn open(body: &[u8], properties: &BasicProperties) -> Result<Opened, EnvelopeError> {
        let empty = FieldTable::default();
        let headers = properties.headers().as_ref().unwrap_or(&empty);
        let get = |k: &'static str| headers.inner().get(k).ok_or(EnvelopeError::Header(k));
        let int = |k: &'static str| match get(k)? {
            AMQPValue::LongLongInt(v) => Ok(*v),
            AMQPValue::LongInt(v) => Ok(i64::from(*v)),
            _ => Err(EnvelopeError::Header(k)),
        };
        let inbox_id = int(INBOX_ID)?;
        let event_id = int(EVENT_ID)?;
        let epoch = int(EPOCH)?;
        let received_at = DateTime::<Utc>::from_timestamp_micros(int(RECEIVED_AT)?)
            .ok_or(EnvelopeError::Header(RECEIVED_AT))?;
        let backfilled = matches!(get(BACKFILLED)?, AMQPValue::Boolean(true));
        let org = match get(ORG)? {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            _ => return Err(EnvelopeError::Header(ORG)),
        };
        let text = std::str::from_utf8(body).map_err(|e| EnvelopeError::Body(e.to_string()))?;
        let raw = RawValue::from_string(text.to_owned())
            .map_err(|e| EnvelopeError::Body(e.to_string()))?;
        let event = Event::from_stored(raw, event_id, backfilled)
            .map_err(|e| EnvelopeError::Body(e.to_string()))?;
        Ok(Opened {
            stored: StoredEvent {
                inbox_id,
                event,
                received_at,
            },
            org,
            epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_the_round_trip_byte_for_byte() {
        let raw = r#"{"type":"message","id":7,"message":{"id":42,"type":"stream","display_recipient":"général","subject":"t","content":"a\u0000b","sender_id":5,"sender_email":"a@x","timestamp":1}}"#;
        let stored = StoredEvent {
            inbox_id: 1234,
            event: Event::parse(raw).expect("an event"),
            received_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("a time"),
        };
        let sealed = Envelope::seal(&stored, "eu", 3);
        let opened = Envelope::open(&sealed.body, &sealed.properties).expect("opens");
        assert_eq!(opened.stored.inbox_id, 1234);
        assert_eq!(opened.stored.event.raw(), raw);
        assert_eq!(opened.stored.event.id(), 7);
        assert_eq!(opened.stored.received_at, stored.received_at);
        assert_eq!((opened.org.as_str(), opened.epoch), ("eu", 3));
    }

    #[test]
    fn a_foreign_message_is_refused_with_the_reason() {
        let err = Envelope::open(b"{}", &BasicProperties::default()).unwrap_err();
        assert!(err.to_string().contains("zel-inbox-id"), "{err}");
    }
}
