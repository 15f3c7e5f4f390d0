//! A TCP proxy on a free loopback port in front of a server, for tests of
//! what the client does when the network misbehaves: it passes bytes,
//! holds them (a stalled network), cuts every connection (a reset), or
//! cuts one connection at a chosen request, either before the server gets
//! it or after the server ran it and before its reply reaches the client:
//! the one case in which only the server knows whether a write happened.
//!
//! ```no_run
//! use redis_runtime::testing::{Cut, Proxy, RedisServer};
//!
//! # async fn demo() {
//! let server = RedisServer::start();
//! let proxy = Proxy::start(server.port());
//! // The next request naming `counter:c1` runs; its reply is lost.
//! let cut = proxy.arm(b"counter:c1", Cut::AfterRun);
//! // ... send it through a client connected to `proxy.port()` ...
//! cut.await;
//! assert_eq!(proxy.cuts(), (1, 0));
//! # }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where [`Proxy::arm`] cuts the connection that carries the chosen
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The request never reaches the server: the connection closes
    /// instead. The server ran nothing, though the client cannot know.
    BeforeSend,
    /// The request reaches the server, which runs it; what the server
    /// sends back next (its reply) is dropped and the connection closes.
    /// A reply that says the server did not run it (`NOSCRIPT`, which
    /// makes the client load a script and send the call again, `MOVED`,
    /// `ASK`, `TRYAGAIN`, `LOADING`, `BUSY`, `READONLY`, `MASTERDOWN`,
    /// `CLUSTERDOWN`, `NOREPLICAS`) passes, and the cut waits for the request's next
    /// sending.
    AfterRun,
}

/// A request to cut, once: the bytes that mark it and where to cut.
struct Armed {
    marker: Vec<u8>,
    cut: Cut,
    done: tokio::sync::oneshot::Sender<()>,
}

/// What every link of one proxy shares.
#[derive(Default)]
struct Shared {
    stalled: AtomicBool,
    armed: Mutex<Vec<Armed>>,
    /// Cuts made with [`Cut::AfterRun`] and [`Cut::BeforeSend`].
    after_run: AtomicU64,
    before_send: AtomicU64,
    /// With `n` > 0, every `n`th chunk of requests is cut, after it ran
    /// and before it was sent in turn (see [`Proxy::cut_every`]).
    cut_every: AtomicU64,
    chunks: AtomicU64,
}

impl Shared {
    /// The cut `cut_every` asks of the next chunk of requests, if any.
    fn due_cut(&self) -> Option<Cut> {
        let every = self.cut_every.load(Ordering::SeqCst);
        if every == 0 {
            return None;
        }
        let chunk = self.chunks.fetch_add(1, Ordering::SeqCst) + 1;
        match chunk % (2 * every) {
            0 => Some(Cut::BeforeSend),
            n if n == every => Some(Cut::AfterRun),
            _ => None,
        }
    }

    /// The first armed cut whose marker `request` holds, taken.
    fn take_armed(&self, request: &[u8]) -> Option<Armed> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let hit = armed.iter().position(|armed| {
            request
                .windows(armed.marker.len().max(1))
                .any(|window| window == armed.marker.as_slice())
        })?;
        Some(armed.remove(hit))
    }

    async fn wait_while_stalled(&self) {
        while self.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A byte-forwarding TCP proxy on a free loopback port; see the module
/// docs. Every connection closes when it is dropped.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Ends the proxy's thread, which closes every connection.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to
    /// `127.0.0.1:target`. The proxy runs on a thread of its own, so it
    /// outlives the runtime of the test that started it (tests sharing one
    /// may each have their own).
    pub fn start(target: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .unwrap_or_else(|e| panic!("cannot bind a loopback port for a proxy: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the proxy's listener has no address: {e}"))
            .port();
        let shared = Arc::new(Shared::default());
        let links = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build the proxy's runtime: {e}"));
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn({
                let (shared, links) = (shared.clone(), links.clone());
                move || {
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)
                            .unwrap_or_else(|e| panic!("the proxy's listener: {e}"));
                        tokio::select! {
                            () = accept(listener, target, shared, links) => {}
                            _ = stopped => {}
                        }
                    });
                    // Dropping the runtime drops every link: both sockets close.
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the proxy's thread: {e}"));
        Self {
            port,
            shared,
            links,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Holds every byte, both ways, from now on until [`resume`](Self::resume).
    pub fn stall(&self) {
        self.shared.stalled.store(true, Ordering::SeqCst);
    }

    /// Passes bytes again after [`stall`](Self::stall).
    pub fn resume(&self) {
        self.shared.stalled.store(false, Ordering::SeqCst);
    }

    /// Drops every open connection, mid-request or not. New connections
    /// are accepted as before.
    pub fn cut(&self) {
        for link in self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            link.abort();
        }
    }

    /// Cuts the connection that next carries a request holding `marker`
    /// (say, a key name), at `cut`, once. Cuts armed with other markers
    /// wait for theirs, so tests sharing a proxy keep to their own keys.
    /// The returned future completes when the cut is made.
    pub fn arm(&self, marker: &[u8], cut: Cut) -> impl Future<Output = ()> + use<> {
        let (done, made) = tokio::sync::oneshot::channel();
        self.shared
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Armed {
                marker: marker.to_vec(),
                cut,
                done,
            });
        async move {
            let _ = made.await;
        }
    }

    /// From now on cuts every `every`th chunk of requests the proxy
    /// carries, on whichever connection it arrives, alternately after the
    /// server ran it and before it was sent; 0 stops. A chunk is what one
    /// read from the client's socket gave: one request, or several that
    /// arrived together, which all share its fate.
    pub fn cut_every(&self, every: u64) {
        self.shared.cut_every.store(every, Ordering::SeqCst);
    }

    /// How many cuts were made after the server ran the request, and how
    /// many before it got it.
    pub fn cuts(&self) -> (u64, u64) {
        (
            self.shared.after_run.load(Ordering::SeqCst),
            self.shared.before_send.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections for ever, forwarding each to `target`.
async fn accept(
    listener: TcpListener,
    target: u16,
    shared: Arc<Shared>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while let Ok((inbound, _)) = listener.accept().await {
        // A refused target closes the client's connection: it sees the
        // server as down.
        let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
            continue;
        };
        let link = tokio::spawn(forward(inbound, outbound, shared.clone()));
        let mut links = links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|link| !link.is_finished());
        links.push(link);
    }
}

/// Forwards one connection both ways until either side closes or a cut
/// ends it (returning drops both sockets, which closes them).
async fn forward(inbound: TcpStream, outbound: TcpStream, shared: Arc<Shared>) {
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let mut request = vec![0u8; 64 * 1024];
    let mut reply = vec![0u8; 64 * 1024];
    // Set once a request the test cut after running is on its way: the
    // next bytes from the server are its reply (or an earlier one's).
    let mut swallow: Option<Armed> = None;
    loop {
        tokio::select! {
            read = client_read.read(&mut request) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                shared.wait_while_stalled().await;
                let armed = shared.take_armed(&request[..n]).or_else(|| {
                    let cut = shared.due_cut()?;
                    let (done, _) = tokio::sync::oneshot::channel();
                    Some(Armed { marker: Vec::new(), cut, done })
                });
                if let Some(armed) = armed {
                    match armed.cut {
                        Cut::BeforeSend => {
                            shared.before_send.fetch_add(1, Ordering::SeqCst);
                            let _ = armed.done.send(());
                            return;
                        }
                        Cut::AfterRun => swallow = Some(armed),
                    }
                }
                if server_write.write_all(&request[..n]).await.is_err() {
                    return;
                }
            }
            read = server_read.read(&mut reply) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if let Some(armed) = swallow.take() {
                    if !ran(&reply[..n]) {
                        // Armed again, for the request's next sending (a
                        // cut `cut_every` chose lets this one pass).
                        if !armed.marker.is_empty() {
                            let mut pending = shared.armed.lock().unwrap_or_else(|e| e.into_inner());
                            pending.insert(0, armed);
                        }
                    } else {
                        shared.after_run.fetch_add(1, Ordering::SeqCst);
                        let _ = armed.done.send(());
                        return;
                    }
                }
                shared.wait_while_stalled().await;
                if client_write.write_all(&reply[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Whether `reply` (the first bytes the server sent after a request) can
/// be the reply of a request the server ran: not an error that says it
/// refused to run it.
fn ran(reply: &[u8]) -> bool {
    const NOT_RUN: [&[u8]; 10] = [
        b"-NOREPLICAS",
        b"-NOSCRIPT",
        b"-MOVED",
        b"-ASK",
        b"-TRYAGAIN",
        b"-LOADING",
        b"-BUSY",
        b"-READONLY",
        b"-MASTERDOWN",
        b"-CLUSTERDOWN",
    ];
    !NOT_RUN.iter().any(|code| reply.starts_with(code))
}
