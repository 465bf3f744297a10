//! A TCP forwarder on loopback that can be cut, stalled and restored, to
//! simulate a database server that goes away (restart, failover, network
//! partition), stops answering (a black hole) or whose answers are lost on
//! the way back (a COMMIT that went through, its answer never arriving)
//! without touching the real
//! server other tests share; and [`redirect_pg_url`], a database URL
//! pointed at the proxy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// A forwarder from `127.0.0.1:<port>` to a target address.
///
/// While cut, every connection that was open is closed and new ones are
/// accepted and closed at once (the client sees the connection end before
/// the server says anything, as behind a load balancer whose backend is
/// down). Dropping the proxy stops it and closes every connection.
pub struct TcpProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    stalled: watch::Sender<bool>,
    muted: Arc<Mute>,
    accepted: Arc<AtomicU64>,
    task: AbortHandle,
}

/// What [`TcpProxy::lose_answers_after`] set: the bytes whose sending
/// mutes the server's answers, and whether they have been sent.
#[derive(Default)]
struct Mute {
    armed: std::sync::Mutex<Option<Vec<u8>>>,
    on: AtomicBool,
}

impl Mute {
    /// Notes `chunk`, on its way to the server: it may be the one.
    fn sending(&self, chunk: &[u8]) {
        let armed = self.armed.lock().unwrap();
        if let Some(p) = armed.as_deref() {
            if chunk.windows(p.len()).any(|w| w == p) {
                self.on.store(true, Ordering::SeqCst);
            }
        }
    }
}

impl TcpProxy {
    /// Binds `127.0.0.1:0` and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("tcp_proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("tcp_proxy: local_addr");
        let (cut, _) = watch::channel(false);
        let (stalled, _) = watch::channel(false);
        let accepted = Arc::new(AtomicU64::new(0));
        let muted = Arc::new(Mute::default());
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            cut.clone(),
            stalled.clone(),
            muted.clone(),
            accepted.clone(),
        ));
        TcpProxy {
            addr,
            cut,
            stalled,
            muted,
            accepted,
            task: task.abort_handle(),
        }
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Stops forwarding without closing anything: open connections and new
    /// ones stay open and silent, as behind a network that drops packets.
    /// Ends with [`TcpProxy::cut`] (which closes them) or dropping the proxy.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Once a client sends bytes containing `pattern` (a value only one
    /// statement binds, say), throws away everything the server answers on
    /// every connection, while still forwarding what clients send: that
    /// statement runs (and commits) on the server, and the client never
    /// hears of it. Ends with [`TcpProxy::restore`].
    pub fn lose_answers_after(&self, pattern: &[u8]) {
        *self.muted.armed.lock().unwrap() = Some(pattern.to_vec());
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
        self.stalled.send_replace(false);
        *self.muted.armed.lock().unwrap() = None;
        self.muted.on.store(false, Ordering::SeqCst);
    }

    /// Whether the proxy is cut.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    /// Connections accepted so far, refused ones included.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Connection tasks watch the flag: cutting ends them all.
        self.cut.send_replace(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    cut: watch::Sender<bool>,
    stalled: watch::Sender<bool>,
    muted: Arc<Mute>,
    accepted: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        if *cut.borrow() {
            drop(client);
            continue;
        }
        let mut cut = cut.subscribe();
        if *stalled.borrow() {
            // Held open and silent until the proxy is cut or dropped.
            tokio::spawn(async move {
                let _ = cut.wait_for(|c| *c).await;
                drop(client);
            });
            continue;
        }
        tokio::spawn(forward(
            client,
            target,
            cut,
            stalled.subscribe(),
            muted.clone(),
        ));
    }
}

/// Copies bytes both ways until either side closes or the proxy is cut
/// (the server's dropped while muted); while stalled, holds both
/// connections open without copying.
async fn forward(
    mut client: TcpStream,
    target: SocketAddr,
    mut cut: watch::Receiver<bool>,
    mut stalled: watch::Receiver<bool>,
    muted: Arc<Mute>,
) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.split();
    let (mut server_rx, mut server_tx) = server.split();
    let requests = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    muted.sending(&buf[..n]);
                    if server_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let answers = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) if muted.on.load(Ordering::SeqCst) => {}
                Ok(n) => {
                    if client_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let stall = tokio::select! {
        _ = requests => false,
        _ = answers => false,
        _ = cut.wait_for(|c| *c) => false,
        _ = stalled.wait_for(|s| *s) => true,
    };
    if stall {
        let _ = cut.wait_for(|c| *c).await;
    }
    // Dropping both streams closes both connections.
}

/// `host:port` of a `postgres://[user[:pw]@]host[:port]/db` URL, and the
/// same URL pointing at `to` instead.
pub fn redirect_pg_url(url: &str, to: SocketAddr) -> (String, String) {
    let scheme_end = url.find("://").expect("a postgres:// URL") + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let target = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let redirected = format!(
        "{}{}{to}{}",
        &url[..scheme_end],
        &authority[..host_start],
        &rest[authority_end..]
    );
    (target, redirected)
}
