//! [`TlsProxy`]: TLS in front of a plain server (the fake Zulip), with a
//! certificate for `127.0.0.1`, `localhost` and `zulip.test`
//! (`tls_test_cert.pem`, its key `tls_test_key.pem`) issued by a private
//! CA (`tls_test_ca.pem`), all made with openssl for the tests and valid
//! until 2126, to test `cert_bundle` and `insecure`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The CA that issued the proxy's certificate: a `cert_bundle` trusting it.
pub const TLS_TEST_CA: &str = include_str!("tls_test_ca.pem");
const TLS_TEST_CERT: &str = include_str!("tls_test_cert.pem");
const TLS_TEST_KEY: &str = include_str!("tls_test_key.pem");

/// Writes the test certificate and its key (the key owner-only) into
/// `dir`, for a client that presents them; returns their paths.
pub fn write_client_identity(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&cert, TLS_TEST_CERT).expect("write the client certificate");
    super::config::write_secret(&key, TLS_TEST_KEY);
    (cert, key)
}

/// A TLS terminator on `127.0.0.1:<port>` forwarding to a target; stops
/// when dropped.
pub struct TlsProxy {
    addr: SocketAddr,
    failed_handshakes: Arc<AtomicU64>,
    task: AbortHandle,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsProxy {
    /// Serves TLS on a free port, each connection piped to `target`.
    pub async fn start(target: SocketAddr) -> TlsProxy {
        TlsProxy::serve(target, false).await
    }

    /// [`TlsProxy::start`], refusing clients without a certificate the
    /// test CA issued (as `tls_test_cert.pem`, which may be a client's).
    pub async fn start_requiring_client_cert(target: SocketAddr) -> TlsProxy {
        TlsProxy::serve(target, true).await
    }

    async fn serve(target: SocketAddr, client_auth: bool) -> TlsProxy {
        let certs = vec![CertificateDer::from_pem_slice(TLS_TEST_CERT.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(TLS_TEST_KEY.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(TLS_TEST_CA.as_bytes()).expect("CA"))
                .expect("the test CA");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(certs, key)
            .expect("the test certificate and key");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let failed_handshakes = Arc::new(AtomicU64::new(0));
        let failed = failed_handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, failed) = (acceptor.clone(), failed.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    if let Ok(mut plain) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        })
        .abort_handle();
        TlsProxy {
            addr,
            failed_handshakes,
            task,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn site(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Handshakes the client broke off (it did not trust the certificate).
    pub fn failed_handshakes(&self) -> u64 {
        self.failed_handshakes.load(Ordering::SeqCst)
    }
}
