//! How the connection to Zulip is secured, as the official bindings
//! (`zulip.Client`) decide it: `insecure` (`ZULIP_ALLOW_INSECURE`) turns
//! certificate verification off, with a warning at every start; otherwise
//! `cert_bundle` (`ZULIP_CERT_BUNDLE`) is the only set of CAs trusted, as
//! `requests`' `verify=PATH` makes it; `client_cert` (`ZULIP_CERT`) with
//! `client_cert_key` (`ZULIP_CERT_KEY`), or a `client_cert` PEM holding
//! both, is presented as the client's identity. The environment variable
//! beats the zuliprc option, as in Python. Also the plain-http rule: an
//! `http://` site is refused unless it is this host.

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::ClientBuilder;
use secrecy::{ExposeSecret as _, SecretSlice};

use crate::config::{read_secret_file, FilePermissions, SecretFileError};

/// The TLS settings of one account, checked.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// Skip certificate verification (`insecure` / `ZULIP_ALLOW_INSECURE`).
    pub insecure: bool,
    /// The CAs to verify the server with, instead of the built-in ones
    /// (`cert_bundle` / `ZULIP_CERT_BUNDLE`); unused when insecure.
    pub cert_bundle: Option<PathBuf>,
    /// The client certificate (`client_cert` / `ZULIP_CERT`).
    pub client_cert: Option<PathBuf>,
    /// Its private key (`client_cert_key` / `ZULIP_CERT_KEY`); without it
    /// the certificate's file holds the key too.
    pub client_cert_key: Option<PathBuf>,
    /// The certificate and key PEM, read at start. Never printed.
    identity: Option<SecretSlice<u8>>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("insecure", &self.insecure)
            .field("cert_bundle", &self.cert_bundle)
            .field("client_cert", &self.client_cert)
            .field("client_cert_key", &self.client_cert_key)
            .finish_non_exhaustive()
    }
}

/// Why the TLS settings cannot be used. No message holds key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `insecure` is not `true` or `false`: (origin, value).
    #[error("{0} sets insecure to {1:?}, but it must be 'true' or 'false'")]
    InvalidInsecure(String, String),
    /// Verification is on and the CA bundle is not a file: (path).
    #[error("TLS certificate bundle {file} (cert_bundle or ZULIP_CERT_BUNDLE) does not exist", file = .0.display())]
    CertBundleNotFound(PathBuf),
    /// The CA bundle holds no usable certificate: (path, reason).
    #[error("TLS certificate bundle {file} is not a PEM bundle of certificates: {1}", file = .0.display())]
    CertBundleInvalid(PathBuf, String),
    /// A client key without a client certificate: (origin of the key).
    #[error("{0} names a client certificate key, but no client certificate (client_cert or ZULIP_CERT) is given")]
    KeyWithoutCert(String),
    /// The client certificate is not a file: (path).
    #[error("client certificate {file} (client_cert or ZULIP_CERT) does not exist", file = .0.display())]
    ClientCertNotFound(PathBuf),
    /// The client key is not a file: (path).
    #[error("client certificate key {file} (client_cert_key or ZULIP_CERT_KEY) does not exist", file = .0.display())]
    ClientKeyNotFound(PathBuf),
    /// A file holding the client's private key cannot be read, or others
    /// may read it.
    #[error("client certificate key: {0}")]
    ClientKey(#[source] SecretFileError),
    /// The certificate and key do not make an identity: (reason).
    #[error("client certificate {file} and its key are not a usable PEM certificate and private key: {1}", file = .0.display())]
    ClientIdentityInvalid(PathBuf, String),
}

/// A setting's value and where it came from (for messages), looked up by
/// environment variable, then zuliprc option.
pub(super) type Setting<'a> = &'a dyn Fn(&'static str, &'static str) -> Option<(String, String)>;

/// Reads and checks the TLS settings: every problem, not only the first.
pub(super) fn resolve_tls(
    setting: Setting,
    policy: FilePermissions,
) -> Result<TlsOptions, Vec<TlsError>> {
    let mut problems = Vec::new();
    let insecure = match setting("ZULIP_ALLOW_INSECURE", "insecure") {
        None => false,
        Some((v, _)) if v.eq_ignore_ascii_case("true") => true,
        Some((v, _)) if v.eq_ignore_ascii_case("false") => false,
        Some((value, origin)) => {
            problems.push(TlsError::InvalidInsecure(origin, value));
            false
        }
    };
    let path = |var, opt| setting(var, opt).map(|(v, origin)| (PathBuf::from(v), origin));
    let cert_bundle = path("ZULIP_CERT_BUNDLE", "cert_bundle").map(|(p, _)| p);
    if let Some(bundle) = cert_bundle.as_ref().filter(|_| !insecure) {
        if let Err(e) = read_bundle(bundle) {
            problems.push(e);
        }
    }
    let cert = path("ZULIP_CERT", "client_cert");
    let key = path("ZULIP_CERT_KEY", "client_cert_key");
    let identity = match (&cert, &key) {
        (None, None) => None,
        (None, Some((_, origin))) => {
            problems.push(TlsError::KeyWithoutCert(origin.clone()));
            None
        }
        (Some((cert, _)), key) => {
            let key = key.as_ref().map(|(k, _)| k.as_path());
            read_identity(cert, key, policy)
                .map_err(|e| problems.push(e))
                .ok()
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(TlsOptions {
        insecure,
        cert_bundle,
        client_cert: cert.map(|(c, _)| c),
        client_cert_key: key.map(|(k, _)| k),
        identity,
    })
}

/// The CAs of a bundle.
fn read_bundle(bundle: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    if !bundle.is_file() {
        return Err(TlsError::CertBundleNotFound(bundle.to_owned()));
    }
    let invalid = |why: String| TlsError::CertBundleInvalid(bundle.to_owned(), why);
    let pem = std::fs::read(bundle).map_err(|e| invalid(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("it holds no certificate".to_owned()));
    }
    Ok(certs)
}

/// The certificate (and key, from its own file or the certificate's)
/// as one PEM, checked to make an identity. The file holding the key
/// must obey the permissions rule.
fn read_identity(
    cert: &Path,
    key: Option<&Path>,
    policy: FilePermissions,
) -> Result<SecretSlice<u8>, TlsError> {
    if !cert.is_file() {
        return Err(TlsError::ClientCertNotFound(cert.to_owned()));
    }
    let mut pem = match key {
        Some(key) if !key.is_file() => return Err(TlsError::ClientKeyNotFound(key.to_owned())),
        Some(key) => {
            let mut pem = std::fs::read(cert)
                .map_err(|e| TlsError::ClientKey(SecretFileError::Unreadable(cert.into(), e)))?;
            pem.push(b'\n');
            pem.extend_from_slice(&read_secret_file(key, policy).map_err(TlsError::ClientKey)?);
            pem
        }
        None => std::mem::take(&mut *read_secret_file(cert, policy).map_err(TlsError::ClientKey)?),
    };
    if let Err(e) = reqwest::Identity::from_pem(&pem) {
        zeroize::Zeroize::zeroize(&mut pem);
        return Err(TlsError::ClientIdentityInvalid(
            cert.to_owned(),
            e.to_string(),
        ));
    }
    Ok(SecretSlice::from(pem))
}

impl TlsOptions {
    /// `builder` set up with these options; a warning is logged when
    /// verification is off.
    ///
    /// # Errors
    ///
    /// A sentence when a file changed since it was checked.
    pub(super) fn apply(
        &self,
        builder: ClientBuilder,
        site: &str,
    ) -> Result<ClientBuilder, String> {
        let mut builder = builder;
        if self.insecure {
            tracing::warn!(site, "Insecure mode enabled (insecure = true or ZULIP_ALLOW_INSECURE): the server's TLS certificate is not verified, so anyone on the network path can read the API key and every event");
            builder = builder.danger_accept_invalid_certs(true);
        } else if let Some(bundle) = &self.cert_bundle {
            // As requests' verify=PATH: the bundle replaces the built-in CAs.
            builder = builder.tls_built_in_root_certs(false);
            for cert in read_bundle(bundle).map_err(|e| e.to_string())? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &self.identity {
            let identity = reqwest::Identity::from_pem(pem.expose_secret())
                .map_err(|e| format!("the client certificate: {e}"))?;
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

/// Whether `base_url` is plain `http://` to a host other than this one
/// (`localhost`, `127.0.0.0/8`, `::1`), where the API key would cross the
/// network unencrypted.
pub(crate) fn is_remote_plain_http(base_url: &str) -> bool {
    let Some(rest) = base_url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &base_url[7..])
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn settings<'a>(
        pairs: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&'static str, &'static str) -> Option<(String, String)> + 'a {
        move |var, opt| {
            pairs
                .iter()
                .find(|(k, _)| *k == var || *k == opt)
                .map(|(k, v)| ((*v).to_owned(), format!("`{k}`")))
        }
    }

    fn resolve(pairs: &[(&str, &str)]) -> Result<TlsOptions, Vec<String>> {
        resolve_tls(&settings(pairs), FilePermissions::Enforce)
            .map_err(|p| p.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn plain_http_is_refused_except_to_this_host() {
        for remote in [
            "http://chat.example.com/api/v1/",
            "HTTP://10.0.0.1:80/api/v1/",
            "http://localhost.example.com/api/v1/",
            "http://u@[2001:db8::1]:9991/api/v1/",
        ] {
            assert!(is_remote_plain_http(remote), "{remote}");
        }
        for fine in [
            "https://chat.example.com/api/v1/",
            "http://localhost:9991/api/v1/",
            "http://127.0.0.1:4444/api/v1/",
            "http://127.8.9.1/api/v1/",
            "http://[::1]:80/api/v1/",
        ] {
            assert!(!is_remote_plain_http(fine), "{fine}");
        }
    }

    #[test]
    fn nothing_set_verifies_with_the_built_in_cas() {
        let tls = resolve(&[]).unwrap();
        assert!(!tls.insecure && tls.cert_bundle.is_none() && tls.identity.is_none());
    }

    #[test]
    fn insecure_must_be_true_or_false_and_skips_the_bundle_check() {
        let tls = resolve(&[("insecure", "TRUE"), ("cert_bundle", "/no/ca.pem")]).unwrap();
        assert!(tls.insecure);
        let err = resolve(&[("insecure", "yes")]).unwrap_err();
        assert_eq!(
            err,
            ["`insecure` sets insecure to \"yes\", but it must be 'true' or 'false'"]
        );
        let err = resolve(&[("insecure", "false"), ("cert_bundle", "/no/ca.pem")]).unwrap_err();
        assert!(
            err[0].starts_with("TLS certificate bundle /no/ca.pem"),
            "{err:?}"
        );
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, "not a certificate\n").unwrap();
        let err = resolve(&[("cert_bundle", bundle.to_str().unwrap())]).unwrap_err();
        assert!(err[0].contains("is not a PEM bundle"), "{err:?}");
    }

    #[test]
    fn a_client_key_needs_a_certificate_and_both_must_exist() {
        let err = resolve(&[("client_cert_key", "/k.pem")]).unwrap_err();
        assert_eq!(
            err,
            ["`client_cert_key` names a client certificate key, but no client certificate (client_cert or ZULIP_CERT) is given"]
        );
        let err = resolve(&[("client_cert", "/no/c.pem")]).unwrap_err();
        assert!(
            err[0].starts_with("client certificate /no/c.pem"),
            "{err:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "x").unwrap();
        let cert = cert.to_str().unwrap();
        let err = resolve(&[("client_cert", cert), ("client_cert_key", "/no/k.pem")]).unwrap_err();
        assert!(
            err[0].starts_with("client certificate key /no/k.pem"),
            "{err:?}"
        );
    }

    #[test]
    fn a_loose_client_key_is_refused_with_the_chmod_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "PRIVATE-KEY-MATERIAL").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let pairs = [
            ("client_cert", cert.to_str().unwrap()),
            ("client_cert_key", key.to_str().unwrap()),
        ];
        let err = resolve(&pairs).unwrap_err();
        assert!(
            err[0].contains(&format!("chmod 600 {}", key.display())),
            "{err:?}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = resolve(&pairs).unwrap_err();
        assert!(err[0].contains("not a usable PEM"), "{err:?}");
        assert!(!err[0].contains("PRIVATE-KEY-MATERIAL"), "{err:?}");
    }

    /// The test suite's certificate (issued by its private CA, for
    /// 127.0.0.1, localhost and zulip.test) and key, and that CA.
    const TEST_CERT: &str = include_str!("../../tests/it/support/tls_test_cert.pem");
    const TEST_KEY: &str = include_str!("../../tests/it/support/tls_test_key.pem");
    const TEST_CA: &str = include_str!("../../tests/it/support/tls_test_ca.pem");

    fn private(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_certificate_and_key_make_an_identity_from_two_files_or_one_and_a_bundle_applies() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, both, ca) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("both.pem"),
            dir.path().join("ca.pem"),
        );
        private(&cert, TEST_CERT, 0o644);
        private(&ca, TEST_CA, 0o644);
        private(&key, TEST_KEY, 0o600);
        private(&both, &format!("{TEST_CERT}{TEST_KEY}"), 0o600);
        let (c, k, b) = (
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            both.to_str().unwrap(),
        );
        for pairs in [
            vec![
                ("client_cert", c),
                ("client_cert_key", k),
                ("cert_bundle", c),
            ],
            vec![("client_cert", b)],
        ] {
            let tls = resolve(&pairs).unwrap();
            assert!(tls.identity.is_some(), "{pairs:?}");
            let debug = format!("{tls:?}");
            assert!(!debug.contains("PRIVATE KEY"), "{debug}");
            let builder = tls
                .apply(reqwest::Client::builder(), "https://zulip.test/")
                .unwrap();
            builder
                .build()
                .expect("a client with the identity and the bundle");
        }
        // One file holding the key is a secret file.
        std::fs::set_permissions(&both, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve(&[("client_cert", b)]).unwrap_err();
        assert!(err[0].contains(&format!("chmod 600 {b}")), "{err:?}");
    }
}
