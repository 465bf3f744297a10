//! The request signature: `X-Zulip-Event-Listeners-Signature: t=<unix
//! seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The time is part
//! of what is signed, so a receiver that also checks it is within a few
//! minutes of its own clock refuses a captured request replayed later; each
//! attempt is signed afresh.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name.
pub(super) const HEADER: &str = "X-Zulip-Event-Listeners-Signature";

/// Signs request bodies with one instance's secret. It keeps the keyed
/// HMAC state, not the secret, and is cloned for each request.
#[derive(Clone)]
pub(super) struct Signer(Hmac<Sha256>);

impl Signer {
    /// A signer keyed with `secret`.
    ///
    /// # Errors
    ///
    /// A sentence when the key is refused (HMAC takes keys of every length,
    /// so it is not expected).
    pub(super) fn new(secret: &[u8]) -> Result<Signer, String> {
        Hmac::<Sha256>::new_from_slice(secret)
            .map(Signer)
            .map_err(|e| format!("cannot key the HMAC with the secret: {e}"))
    }

    /// The header's value for `body` sent at `t` (Unix seconds).
    pub(super) fn sign(&self, t: i64, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
        Signer::new(secret).unwrap().sign(t, body)
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_time_a_dot_and_the_body() {
        // Computed independently: Python's
        // hmac.new(b"whsec-test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        let header = sign(b"whsec-test", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1700000000,v1=fed7a1a6c799a6367d73724d76bc70c16678908a32a879cd1ded6565ac05cece"
        );
    }

    #[test]
    fn another_time_body_or_secret_gives_another_signature() {
        let base = sign(b"s", 1, b"body");
        assert_ne!(base, sign(b"s", 2, b"body"));
        assert_ne!(base, sign(b"s", 1, b"Body"));
        assert_ne!(base, sign(b"t", 1, b"body"));
        assert!(base.starts_with("t=1,v1="));
        assert_eq!(base.len(), "t=1,v1=".len() + 64);
    }
}
