//! Talking to Zulip: credentials as the official bindings read them
//! (`credentials`, and the zuliprc INI syntax in `zuliprc`), the HTTP
//! [`Client`] for the event-queue endpoints (`client`, with the payloads it
//! sends and reads in `payloads`, what registration declares by feature
//! level in `capabilities`), the `GET /events` body read as a stream of
//! chunks (`stream`, over the envelope scanner in `scan`), and
//! [`ZulipError`], typed by the response's `code`, never by its translated
//! `msg` (`error`, decoded in `response`), and the rate-limit budget read
//! from every poll's answer (`rate_limit`), and how the connection is
//! secured, as the bindings' zuliprc says (`tls`).

mod capabilities;
mod client;
pub(crate) mod credentials;
mod error;
mod payloads;
mod rate_limit;
mod response;
mod scan;
mod setup;
mod stream;
mod tls;
mod zuliprc;

pub(crate) use client::Client;
pub(crate) use credentials::{
    resolve_credentials, CredentialSources, Credentials, CredentialsError,
};
pub(crate) use error::{ErrorAction, ZulipError};
pub(crate) use payloads::{
    Destination, OutgoingMessage, RegisterParams, Registration, SendError, UserMe,
    DEFAULT_LONGPOLL_TIMEOUT,
};
pub(crate) use rate_limit::RateBudget;
pub(crate) use setup::SetupError;
pub(crate) use stream::{Chunk, Element, EventsStream};

// The parsers of outside input that the fuzz entry points (`src/fuzzing.rs`) drive.
pub(crate) use credentials::api_base_url;
pub(crate) use scan::{Scanner, Step};
pub(crate) use tls::is_remote_plain_http;
pub(crate) use zuliprc::parse_api_section;
