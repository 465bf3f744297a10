//! [`Keyring`]: the AES-256 keys of `[data_protection] key_file` (or
//! `key_env`), the first of which encrypts; the others only decrypt, so the
//! rows of an older key stay readable while `rotate-key` moves them.
//!
//! The file holds one key per line, 32 random bytes written as 64 hex
//! digits (`openssl rand -hex 32`) or in base64 (`openssl rand -base64
//! 32`); blank lines and `#` comments are ignored, and a variable may
//! separate its keys with commas. A key's id ([`KeyId`]) is the first 8 hex
//! digits of the SHA-256 of its 32 bytes: stored with every row it
//! encrypts, it names the key a row needs without revealing it.

use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit as _};
use base64::Engine as _;
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::config::{FilePermissions, SecretError, SecretSource};

/// The id of a key: the first 8 hex digits of the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// The id as stored in the `key_id` columns.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn of(key: &[u8]) -> KeyId {
        KeyId(hex::encode(&Sha256::digest(key)[..4]))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One key: its id and its AES-256-GCM instance (the key schedule, wiped
/// on drop).
pub(super) struct Key {
    pub(super) id: KeyId,
    pub(super) aead: Aes256Gcm,
}

/// The keys that may decrypt rows, the first of which encrypts new ones.
pub struct Keyring {
    keys: Vec<Key>,
}

/// Why a keyring could not be read. No message contains a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file or variable cannot be read, or breaks the permissions rule.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A line is not a key: (source, line number).
    #[error("line {1} of {0} is not a 256-bit key: write 32 random bytes as 64 hex digits (`openssl rand -hex 32`) or in base64 (`openssl rand -base64 32`)")]
    NotAKey(String, usize),
    /// The same key twice: (source, id).
    #[error("{0} holds key {1} twice")]
    Duplicate(String, KeyId),
    /// No key at all: (source).
    #[error("{0} holds no key")]
    Empty(String),
}

impl Keyring {
    /// Reads the keys of `source`, a file checked by the permissions rule
    /// as `policy` says.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] naming the source (and line) when it cannot be
    /// read or holds anything but keys.
    pub fn read(source: &SecretSource, policy: FilePermissions) -> Result<Keyring, KeyringError> {
        let text = source.read(policy)?;
        Keyring::parse(text.expose_secret(), &source.to_string())
    }

    /// The keys written in `text` (see the module's documentation);
    /// `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] when a line is not a key, a key repeats, or there
    /// is none.
    pub fn parse(text: &str, origin: &str) -> Result<Keyring, KeyringError> {
        let mut keys: Vec<Key> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default();
            for word in line.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                let bytes =
                    decode(word).ok_or_else(|| KeyringError::NotAKey(origin.into(), n + 1))?;
                let id = KeyId::of(&bytes);
                if keys.iter().any(|k| k.id == id) {
                    return Err(KeyringError::Duplicate(origin.into(), id));
                }
                let aead = Aes256Gcm::new_from_slice(&bytes)
                    .map_err(|_| KeyringError::NotAKey(origin.into(), n + 1))?;
                keys.push(Key { id, aead });
            }
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty(origin.into()));
        }
        Ok(Keyring { keys })
    }

    /// The id of the key that encrypts.
    pub fn primary(&self) -> &KeyId {
        &self.keys[0].id
    }

    /// The ids of every key, the encrypting one first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|k| &k.id)
    }

    /// Whether key `id` is here.
    pub fn contains(&self, id: &KeyId) -> bool {
        self.keys.iter().any(|k| &k.id == id)
    }

    /// This keyring with `other`'s keys put first (those already here are
    /// moved, not repeated): `rotate-key`'s, which encrypts with the new key
    /// and reads with every key of both.
    pub fn led_by(self, other: Keyring) -> Keyring {
        let mut keys = other.keys;
        for k in self.keys {
            if !keys.iter().any(|o| o.id == k.id) {
                keys.push(k);
            }
        }
        Keyring { keys }
    }

    pub(super) fn first(&self) -> &Key {
        &self.keys[0]
    }

    pub(super) fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id.as_str() == id)
    }

    /// The ids, comma-separated, for messages.
    pub(super) fn id_list(&self) -> String {
        self.ids().map(KeyId::as_str).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring [{}]", self.id_list())
    }
}

/// The 32 bytes of a key written in hex or base64.
fn decode(word: &str) -> Option<Zeroizing<Vec<u8>>> {
    let bytes = if word.len() == 64 {
        hex::decode(word).ok()
    } else {
        base64::engine::general_purpose::STANDARD.decode(word).ok()
    }
    .map(Zeroizing::new)?;
    (bytes.len() == 32).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_read_in_hex_or_base64_first_one_first_and_comments_are_ignored() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let ring = Keyring::parse(&format!("# new\n{b64}\n\n{HEX}  # old\n"), "f").unwrap();
        let ids: Vec<&str> = ring.ids().map(KeyId::as_str).collect();
        assert_eq!(ids.len(), 2);
        // sha256 of the bytes 0..32, as `xxd -r -p | sha256sum` prints it.
        assert_eq!(ids[1], "630dcd29");
        assert_eq!(ring.primary(), &KeyId::of(&[7u8; 32]));
        assert_eq!(
            format!("{ring:?}"),
            format!("Keyring [{}, 630dcd29]", ids[0])
        );
    }

    #[test]
    fn a_line_that_is_no_key_a_repeated_key_or_no_key_is_refused_without_quoting_it() {
        let err = Keyring::parse(&format!("{HEX}\nsecretish-but-short\n"), "the file k")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("line 2 of the file k is not a 256-bit key"),
            "{err}"
        );
        assert!(!err.contains("secretish"), "{err}");
        let err = Keyring::parse(&format!("{HEX},{HEX}"), "v").unwrap_err();
        assert_eq!(err.to_string(), "v holds key 630dcd29 twice");
        let err = Keyring::parse("# nothing\n", "v").unwrap_err();
        assert_eq!(err.to_string(), "v holds no key");
    }

    #[test]
    fn a_keyring_led_by_another_encrypts_with_its_first_key_and_keeps_the_rest() {
        let old = Keyring::parse(HEX, "old").unwrap();
        let new = Keyring::parse(&"11".repeat(32), "new").unwrap();
        let new_id = new.primary().clone();
        let both = old.led_by(new);
        assert_eq!(both.primary(), &new_id);
        assert_eq!(both.id_list(), format!("{new_id}, 630dcd29"));
    }
}
