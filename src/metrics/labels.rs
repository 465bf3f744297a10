//! The bounded label values of the daemon's metrics: Zulip event types
//! (a fixed list, anything else `other`) and listener run outcomes.

/// The event types Zulip 10 sends (API §9) plus those of newer servers; the
/// label of any other type is `other`.
const KNOWN_TYPES: &[&str] = &[
    "message",
    "update_message",
    "delete_message",
    "update_message_flags",
    "reaction",
    "submessage",
    "typing",
    "typing_edit_message",
    "user_topic",
    "muted_topics",
    "stream",
    "subscription",
    "default_streams",
    "default_stream_groups",
    "realm_user",
    "realm_bot",
    "user_group",
    "presence",
    "user_status",
    "muted_users",
    "custom_profile_fields",
    "invites_changed",
    "realm",
    "realm_emoji",
    "realm_domains",
    "realm_linkifiers",
    "realm_filters",
    "realm_playgrounds",
    "realm_export",
    "realm_export_consent",
    "realm_user_settings_defaults",
    "realm_billing",
    "user_settings",
    "update_display_settings",
    "update_global_notifications",
    "alert_words",
    "attachment",
    "drafts",
    "saved_snippets",
    "scheduled_messages",
    "onboarding_steps",
    "has_zoom_token",
    "heartbeat",
    "restart",
    "web_reload_client",
    "channel_folder",
    "navigation_view",
    "reminders",
    "push_device",
    "device",
    "malformed",
];

/// A bounded label for an event type.
pub(crate) fn type_label(event_type: &str) -> &str {
    if KNOWN_TYPES.contains(&event_type) {
        event_type
    } else {
        "other"
    }
}

/// Outcome label of a listener run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The run succeeded.
    Success,
    /// The run returned an error or panicked.
    Failure,
    /// The run exceeded `handler_timeout`.
    Timeout,
    /// The run was not attempted (filter, open circuit, disabled listener).
    Skipped,
    /// The run failed and will be tried again.
    Retried,
    /// The run failed for the last time and was dead-lettered.
    DeadLettered,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
            Outcome::Skipped => "skipped",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}
