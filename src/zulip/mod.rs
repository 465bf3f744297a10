//! Talking to Zulip: credentials as the official bindings read them (and
//! the zuliprc INI syntax they use), the
//! HTTP client for the event-queue endpoints, and [`ZulipError`], typed by
//! the response's `code`, never by its translated `msg`.

mod client;
pub mod credentials;
mod error;
mod zuliprc;

pub use client::{
    Client, EventsPage, MessagesPage, RegisterParams, Registration, UserMe,
    DEFAULT_LONGPOLL_TIMEOUT,
};
pub use credentials::{load_credentials, CredentialSources, Credentials, CredentialsError};
pub use error::{ErrorAction, ZulipError};
