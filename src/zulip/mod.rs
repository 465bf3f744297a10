//! Talking to Zulip: credentials as the official bindings read them
//! (`credentials`, and the zuliprc INI syntax in `zuliprc`), the HTTP
//! [`Client`] for the event-queue endpoints (`client`, with the payloads it
//! sends and reads in `payloads`), the `GET /events` body read as a stream
//! of chunks (`stream`, over the envelope scanner in `scan`), and
//! [`ZulipError`], typed by the response's `code`, never by its translated
//! `msg` (`error`, decoded in `response`).

mod client;
pub(crate) mod credentials;
mod error;
mod payloads;
mod response;
mod scan;
mod stream;
mod zuliprc;

pub(crate) use client::Client;
pub(crate) use credentials::{load_credentials, CredentialSources, CredentialsError};
pub(crate) use error::{ErrorAction, ZulipError};
pub(crate) use payloads::{RegisterParams, Registration, UserMe, DEFAULT_LONGPOLL_TIMEOUT};
pub(crate) use stream::{Chunk, EventsStream};
