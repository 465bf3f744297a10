//! Encryption at rest (`[data_protection] encrypt_sensitive_data`): the
//! [`Keyring`] read from `key_file` (`keyring.rs`), and the [`Cipher`] the
//! store seals and opens the sensitive columns with (`cipher.rs`): the
//! inbox's raw event JSON, listener data values and reply contents, each
//! row under AES-256-GCM with its own random nonce, bound to its row's
//! identity ([`Aad`]), with the key's id stored beside it.

mod cipher;
mod keyring;

pub use cipher::{Aad, Cipher, CryptoError};
pub use keyring::{KeyId, Keyring, KeyringError};
