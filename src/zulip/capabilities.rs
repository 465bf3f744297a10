//! What `POST /register` declares and asks for, by the server's API
//! feature level: the `client_capabilities` object and the queue-lifetime
//! parameter.
//!
//! # Capabilities
//!
//! Each selects a newer shape of some events, which the daemon handles:
//! `bulk_message_deletion` (`delete_message` with `message_ids`; the older
//! one-event-per-message `message_id` form is read too),
//! `user_settings_object` (`user_settings` events only, no legacy
//! duplicates), `stream_typing_notifications` (channel typing events),
//! `empty_topic_name` (topics may be `""`), `archived_channels` and
//! `include_deactivated_groups` (archived channels and deactivated groups
//! appear in events), `linkifier_url_template`, `user_list_incomplete`,
//! `user_avatar_url_field_optional` (fields the daemon does not read),
//! `simplified_presence_events` (presence keyed by user id, several users
//! per event: `user_activity_tracker` reads both forms).
//!
//! How a server treats a capability it does not know: Zulip 10.2 reads
//! `client_capabilities` as `Json[ClientCapabilities]`, a `TypedDict`
//! validated by pydantic, which by default ignores keys it does not
//! declare (`zerver/views/events_register.py`, `zerver/lib/events.py`);
//! servers before the typed endpoints checked only that each value is a
//! boolean (`check_dict(..., value_validator=check_bool)`). The daemon does
//! not rely on either: it declares the capabilities Zulip 10.2 (feature
//! level 372) knows whatever the server, and a newer one only when
//! `GET /server_settings` said the server's level has it.
//!
//! # Queue lifetime
//!
//! From feature level 481 (Zulip 12.0) servers take `idle_queue_timeout`
//! and say what they granted in `idle_queue_timeout_secs`; before, the
//! undocumented `queue_lifespan_secs` (capped at 7 days), with nothing
//! read back.

use serde_json::{Map, Value};

/// Every capability declared, with the feature level that introduced it.
const CAPABILITIES: &[(&str, i64)] = &[
    // Required inside the object since it was added (Zulip 2.1).
    ("notification_settings_null", 0),
    ("bulk_message_deletion", 13),
    ("user_avatar_url_field_optional", 18),
    ("stream_typing_notifications", 58),
    ("user_settings_object", 89),
    ("linkifier_url_template", 176),
    ("user_list_incomplete", 232),
    ("include_deactivated_groups", 294),
    ("archived_channels", 315),
    ("empty_topic_name", 334),
    ("simplified_presence_events", 419),
];

/// The feature level of Zulip 10.2, whose capabilities are always declared.
pub(crate) const ZULIP_10_2: i64 = 372;

/// The feature level from which `idle_queue_timeout` replaces
/// `queue_lifespan_secs`.
pub(crate) const IDLE_QUEUE_TIMEOUT_LEVEL: i64 = 481;

/// The queue lifetime a server before feature level 481 grants when none is
/// asked for (`DEFAULT_EVENT_QUEUE_TIMEOUT_SECS`).
pub(crate) const DEFAULT_QUEUE_LIFETIME_SECS: u64 = 600;

/// The longest lifetime such a server grants (`MAX_QUEUE_TIMEOUT_SECS`).
pub(crate) const MAX_QUEUE_LIFETIME_SECS: u64 = 604_800;

/// The `client_capabilities` for a server at feature level `level`
/// (`None` when it could not be learnt: the 10.2 set).
pub(crate) fn client_capabilities(level: Option<i64>) -> Value {
    let level = level.unwrap_or(ZULIP_10_2).max(ZULIP_10_2);
    let declared: Map<String, Value> = CAPABILITIES
        .iter()
        .filter(|(_, since)| *since <= level)
        .map(|(name, _)| ((*name).to_owned(), Value::Bool(true)))
        .collect();
    Value::Object(declared)
}

/// The parameter asking a server at `level` for an idle lifetime of `secs`
/// (none for 0, the server's default).
pub(crate) fn lifetime_param(level: Option<i64>, secs: u64) -> Option<(&'static str, String)> {
    let name = match level {
        Some(l) if l >= IDLE_QUEUE_TIMEOUT_LEVEL => "idle_queue_timeout",
        _ => "queue_lifespan_secs",
    };
    (secs > 0).then(|| (name, secs.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn a_10_2_server_gets_the_ten_capabilities_it_knows() {
        let caps = client_capabilities(Some(372));
        assert_eq!(caps.as_object().unwrap().len(), 10);
        assert!(!names(&caps).contains(&"simplified_presence_events"));
        assert_eq!(caps, client_capabilities(None), "an unknown level: 10.2's");
        assert_eq!(
            caps,
            client_capabilities(Some(200)),
            "older servers get them too (they accept any boolean)"
        );
        assert!(caps["notification_settings_null"].as_bool().unwrap());
    }

    #[test]
    fn an_11_0_server_also_gets_simplified_presence_events() {
        let caps = client_capabilities(Some(419));
        assert!(names(&caps).contains(&"simplified_presence_events"));
        assert!(names(&caps).contains(&"bulk_message_deletion"));
    }

    #[test]
    fn the_lifetime_is_asked_with_the_parameter_the_server_knows() {
        assert_eq!(
            lifetime_param(Some(481), 86_400),
            Some(("idle_queue_timeout", "86400".to_owned()))
        );
        assert_eq!(
            lifetime_param(Some(480), 86_400),
            Some(("queue_lifespan_secs", "86400".to_owned()))
        );
        assert_eq!(
            lifetime_param(None, 3600).map(|p| p.0),
            Some("queue_lifespan_secs")
        );
        assert_eq!(lifetime_param(Some(481), 0), None);
    }
}
