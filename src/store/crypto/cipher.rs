//! [`Cipher`]: what the store seals a sensitive column with before it is
//! written and opens it with after it is read. A sealed value is the text
//! `base64(version ‖ nonce ‖ ciphertext ‖ tag)`: AES-256-GCM under the
//! keyring's first key, a fresh random 96-bit nonce from the operating
//! system per value, and as associated data the row's identity ([`Aad`]),
//! so a value copied into another row, or altered, does not open. A row
//! whose `key_id` is NULL was written in plain text (before encryption was
//! turned on) and is read as it is.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::Nonce;
use base64::Engine as _;
use rand::TryRngCore as _;

use super::keyring::{KeyId, Keyring};
use crate::event::Event;

/// The first byte of a sealed value: its layout's version.
const VERSION: u8 = 1;
/// AES-GCM's nonce length.
const NONCE: usize = 12;

/// The row a sealed value belongs to: bound to it as associated data.
#[derive(Debug, Clone, Copy)]
pub enum Aad<'a> {
    /// `event_listeners_inbox.raw` of (instance, queue id, event id).
    Inbox {
        /// `instance`.
        instance: &'a str,
        /// `queue_id` (the origin as stored).
        queue_id: &'a str,
        /// `event_id`.
        event_id: i64,
    },
    /// `event_listeners_listenerdata.value` of (listener, key).
    ListenerData {
        /// `listener_name`.
        listener: &'a str,
        /// `key`.
        key: &'a str,
    },
    /// `event_listeners_replyoutbox.content` of (listener, inbox id, seq).
    Outbox {
        /// `listener_name`.
        listener: &'a str,
        /// `inbox_id`.
        inbox_id: i64,
        /// `seq`.
        seq: i64,
    },
}

impl Aad<'_> {
    /// The associated data: the table's name, then each field, each
    /// length-prefixed so no two rows' identities run together alike.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let mut field = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        match *self {
            Aad::Inbox {
                instance,
                queue_id,
                event_id,
            } => {
                field(b"event_listeners_inbox.raw");
                field(instance.as_bytes());
                field(queue_id.as_bytes());
                field(&event_id.to_be_bytes());
            }
            Aad::ListenerData { listener, key } => {
                field(b"event_listeners_listenerdata.value");
                field(listener.as_bytes());
                field(key.as_bytes());
            }
            Aad::Outbox {
                listener,
                inbox_id,
                seq,
            } => {
                field(b"event_listeners_replyoutbox.content");
                field(listener.as_bytes());
                field(&inbox_id.to_be_bytes());
                field(&seq.to_be_bytes());
            }
        }
        out
    }
}

impl fmt::Display for Aad<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aad::Inbox {
                queue_id, event_id, ..
            } => write!(f, "the inbox row of event {event_id} of {queue_id}"),
            Aad::ListenerData { listener, .. } => {
                write!(f, "a listener data row of {listener}")
            }
            Aad::Outbox {
                listener,
                inbox_id,
                seq,
            } => write!(f, "reply {seq} of {listener} to inbox row {inbox_id}"),
        }
    }
}

/// Why a value could not be sealed or opened. No message holds a key or
/// any of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The row's key is not in the keyring: (row, key id, the ids held).
    #[error("{0} is encrypted with key {1}, which [data_protection] key_file does not hold (it holds {2}): add that key to the file again to read it")]
    UnknownKey(String, String, String),
    /// The row is encrypted but no keyring is configured: (row, key id).
    #[error("{0} is encrypted with key {1}, but no [data_protection] key_file is configured")]
    NoKeyring(String, String),
    /// The value does not decrypt under its key: (row, key id).
    #[error("{0} does not decrypt under key {1}: it was altered or belongs to another row")]
    Corrupt(String, String),
    /// A rewrite under the encrypting key was asked of a store that has none.
    #[error(
        "no key encrypts: [data_protection] encrypt_sensitive_data is off or key_file is not set"
    )]
    NotEncrypting,
    /// The operating system gave no random nonce: (cause).
    #[error("no random nonce could be drawn: {0}")]
    Random(String),
}

/// A value as stored: the id of the key that sealed it (`None`: plain),
/// and its text.
pub(crate) type Sealed<'k, 'a> = (Option<&'k KeyId>, Cow<'a, str>);

/// The store's encryption: the keyring when one is configured, and whether
/// new rows are encrypted. The default holds no key and encrypts nothing.
#[derive(Debug, Clone, Default)]
pub struct Cipher {
    keys: Option<Arc<Keyring>>,
    encrypt: bool,
}

impl Cipher {
    /// New rows encrypted with `keys`' first key when `encrypt`; rows read
    /// with any of them.
    pub fn new(keys: Option<Arc<Keyring>>, encrypt: bool) -> Cipher {
        let encrypt = encrypt && keys.is_some();
        Cipher { keys, encrypt }
    }

    /// The key new rows are encrypted with, if they are.
    pub fn encrypting(&self) -> Option<&KeyId> {
        self.keys
            .as_deref()
            .filter(|_| self.encrypt)
            .map(Keyring::primary)
    }

    /// The keyring, if one is configured.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keys.as_deref()
    }

    /// `plain` as it is to be stored in `row`, with the id of the key that
    /// sealed it (`None`, and `plain` itself, when not encrypting).
    ///
    /// # Errors
    ///
    /// [`CryptoError::Random`] when no nonce can be drawn.
    pub fn seal<'a>(
        &self,
        row: &Aad<'_>,
        plain: &'a str,
    ) -> Result<(Option<&KeyId>, Cow<'a, str>), CryptoError> {
        let Some(keys) = self.keys.as_deref().filter(|_| self.encrypt) else {
            return Ok((None, Cow::Borrowed(plain)));
        };
        let key = keys.first();
        let mut nonce = [0u8; NONCE];
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| CryptoError::Random(e.to_string()))?;
        let aad = row.bytes();
        let sealed = key
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Corrupt(row.to_string(), key.id.to_string()))?;
        let mut bytes = Vec::with_capacity(1 + NONCE + sealed.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        let text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        Ok((Some(&key.id), Cow::Owned(text)))
    }

    /// The raw JSON of `events` as `instance`'s inbox rows of `origin`
    /// store it: each [`Cipher::seal`]ed.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Random`] when no nonce can be drawn.
    pub(crate) fn seal_inbox<'a>(
        &self,
        instance: &str,
        origin: &str,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Vec<Sealed<'_, 'a>>, CryptoError> {
        events
            .into_iter()
            .map(|e| {
                let row = Aad::Inbox {
                    instance,
                    queue_id: origin,
                    event_id: e.id(),
                };
                self.seal(&row, e.raw())
            })
            .collect()
    }

    /// The plain text of `stored`, read from `row` with `key_id` (`None`:
    /// stored in plain text, returned as it is).
    ///
    /// # Errors
    ///
    /// [`CryptoError`] naming the row and the key when the key is not held
    /// or the value does not decrypt: never a garbled value.
    pub fn open(
        &self,
        key_id: Option<&str>,
        row: &Aad<'_>,
        stored: String,
    ) -> Result<String, CryptoError> {
        let Some(id) = key_id else {
            return Ok(stored);
        };
        let Some(keys) = self.keys.as_deref() else {
            return Err(CryptoError::NoKeyring(row.to_string(), id.to_owned()));
        };
        let Some(key) = keys.get(id) else {
            return Err(CryptoError::UnknownKey(
                row.to_string(),
                id.to_owned(),
                keys.id_list(),
            ));
        };
        let corrupt = || CryptoError::Corrupt(row.to_string(), id.to_owned());
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(stored.as_bytes())
            .map_err(|_| corrupt())?;
        let (version, rest) = bytes.split_first().ok_or_else(corrupt)?;
        if *version != VERSION || rest.len() < NONCE {
            return Err(corrupt());
        }
        let (nonce, sealed) = rest.split_at(NONCE);
        let plain = key
            .aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &row.bytes(),
                },
            )
            .map_err(|_| corrupt())?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }
}

impl Cipher {
    /// The plain JSON text of a JSON column's `stored` value (listener
    /// data): as it is when plain, else the value is a JSON string holding
    /// the sealed text.
    ///
    /// # Errors
    ///
    /// As [`Cipher::open`].
    pub fn open_json(
        &self,
        key_id: Option<&str>,
        row: &Aad<'_>,
        stored: &str,
    ) -> Result<String, CryptoError> {
        if key_id.is_none() {
            return Ok(stored.to_owned());
        }
        let corrupt = || CryptoError::Corrupt(row.to_string(), key_id.unwrap_or_default().into());
        let sealed: String = serde_json::from_str(stored).map_err(|_| corrupt())?;
        self.open(key_id, row, sealed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn cipher(hex_byte: &str) -> Cipher {
        let ring = Keyring::parse(&hex_byte.repeat(32), "test").unwrap();
        Cipher::new(Some(Arc::new(ring)), true)
    }

    const ROW: Aad<'static> = Aad::Inbox {
        instance: "default",
        queue_id: "q1",
        event_id: 7,
    };

    #[test]
    fn a_sealed_value_opens_to_the_same_text_and_holds_none_of_it() {
        let c = cipher("ab");
        let plain = r#"{"type":"message","content":"the secret plan"}"#;
        let (id, sealed) = c.seal(&ROW, plain).unwrap();
        let id = id.unwrap().to_string();
        assert!(!sealed.contains("secret"));
        assert_eq!(c.open(Some(&id), &ROW, sealed.into_owned()).unwrap(), plain);
    }

    #[test]
    fn every_seal_draws_a_new_nonce() {
        let c = cipher("ab");
        let nonces: HashSet<Vec<u8>> = (0..1000)
            .map(|_| {
                let (_, s) = c.seal(&ROW, "same").unwrap();
                let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(s.as_bytes())
                    .unwrap();
                bytes[1..1 + NONCE].to_vec()
            })
            .collect();
        assert_eq!(nonces.len(), 1000);
    }

    #[test]
    fn another_key_an_unknown_key_or_no_keyring_is_an_error_naming_the_key() {
        let mine = cipher("ab");
        let (id, sealed) = mine.seal(&ROW, "x").unwrap();
        let id = id.unwrap().to_string();
        let other = cipher("cd");
        let err = other.open(Some(&id), &ROW, sealed.to_string()).unwrap_err();
        assert!(
            matches!(&err, CryptoError::UnknownKey(_, k, _) if *k == id),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("key {id}")), "{err}");
        // A key of the same id but other bytes cannot happen by chance; a
        // value under the right id with a wrong key is refused all the same.
        let forged = other.seal(&ROW, "x").unwrap().1.into_owned();
        let theirs = other.encrypting().unwrap().to_string();
        assert!(mine.open(Some(&theirs), &ROW, forged).is_err());
        let err = Cipher::default()
            .open(Some(&id), &ROW, sealed.into_owned())
            .unwrap_err();
        assert_eq!(err, CryptoError::NoKeyring(ROW.to_string(), id));
    }

    #[test]
    fn a_tampered_value_or_one_moved_to_another_row_does_not_open() {
        let c = cipher("ab");
        let (id, sealed) = c.seal(&ROW, "hello world").unwrap();
        let id = id.unwrap().to_string();
        let mut bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(sealed.as_bytes())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
        let err = c.open(Some(&id), &ROW, tampered).unwrap_err();
        assert!(matches!(err, CryptoError::Corrupt(..)), "{err}");
        let elsewhere = Aad::Inbox {
            instance: "default",
            queue_id: "q1",
            event_id: 8,
        };
        assert!(c.open(Some(&id), &elsewhere, sealed.to_string()).is_err());
        assert!(c.open(Some(&id), &ROW, "not base64!".into()).is_err());
    }

    #[test]
    fn without_encryption_values_are_kept_and_plain_rows_are_read_as_they_are() {
        let keys = cipher("ab").keys;
        let reading_only = Cipher::new(keys, false);
        let (id, kept) = reading_only.seal(&ROW, "plain").unwrap();
        assert_eq!((id, kept), (None, Cow::Borrowed("plain")));
        assert_eq!(reading_only.encrypting(), None);
        assert_eq!(
            cipher("ab").open(None, &ROW, "plain".into()).unwrap(),
            "plain"
        );
    }
}
