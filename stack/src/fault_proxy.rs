//! A TCP proxy in front of a real server that can hold or cut the server's answer part way:
//! the faults (a body that stalls, a connection that breaks mid-transfer) a real S3 server does
//! not produce on demand. Plain threads, so it outlives any Tokio runtime a test shuts down.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Forwards 127.0.0.1:[`FaultProxy::port`] to an upstream address.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
    closed: AtomicBool,
}

#[derive(Debug)]
struct State {
    /// Bytes sent from upstream to clients, over all connections.
    downstream_bytes: u64,
    /// Downstream forwarding stops once `downstream_bytes` reaches this.
    hold_at: u64,
    /// Every connection's sockets, for [`FaultProxy::cut`].
    sockets: Vec<TcpStream>,
}

impl FaultProxy {
    /// Starts forwarding to `upstream`, passing everything through.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub fn new(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                downstream_bytes: 0,
                hold_at: u64::MAX,
                sockets: Vec::new(),
            }),
            changed: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.closed.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(accepting.upstream) else {
                    continue;
                };
                accepting.connect(client, server);
            }
        });
        FaultProxy { port, shared }
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, stop passing the server's bytes on once `bytes` more have gone through
    /// (the answer stalls there until [`FaultProxy::release`] or [`FaultProxy::cut`]).
    pub fn hold_after(&self, bytes: u64) {
        let mut state = self.shared.lock();
        state.hold_at = state.downstream_bytes.saturating_add(bytes);
        self.shared.changed.notify_all();
    }

    /// Passes everything through again.
    pub fn release(&self) {
        self.shared.lock().hold_at = u64::MAX;
        self.shared.changed.notify_all();
    }

    /// Bytes passed from the server to clients so far.
    pub fn downstream_bytes(&self) -> u64 {
        self.shared.lock().downstream_bytes
    }

    /// True once the answer is held (the hold point was reached).
    pub fn is_holding(&self) -> bool {
        let state = self.shared.lock();
        state.downstream_bytes >= state.hold_at
    }

    /// Waits until the answer is held, up to `limit`; false on timeout.
    pub fn wait_until_holding(&self, limit: Duration) -> bool {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, limit, |s| s.downstream_bytes < s.hold_at)
            .unwrap_or_else(|e| e.into_inner());
        state.downstream_bytes >= state.hold_at
    }

    /// Breaks every open connection (both directions), as a network failure would.
    pub fn cut(&self) {
        let mut state = self.shared.lock();
        for socket in state.sockets.drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        state.hold_at = u64::MAX;
        self.shared.changed.notify_all();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `closed`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connect(self: &Arc<Self>, client: TcpStream, server: TcpStream) {
        let clones = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        );
        let (Ok(client_reader), Ok(server_writer), Ok(client_kept), Ok(server_kept)) = clones
        else {
            return;
        };
        self.lock().sockets.extend([client_kept, server_kept]);
        // Requests pass freely.
        std::thread::spawn(move || pipe(client_reader, server_writer));
        // Answers pass under the hold.
        let shared = Arc::clone(self);
        std::thread::spawn(move || shared.pipe_held(server, client));
    }

    fn pipe_held(&self, mut from: TcpStream, mut to: TcpStream) {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            // Never read more than the hold lets through.
            let allowed = {
                let state = self.lock();
                let state = self
                    .changed
                    .wait_while(state, |s| {
                        s.downstream_bytes >= s.hold_at && !self.closed.load(Ordering::SeqCst)
                    })
                    .unwrap_or_else(|e| e.into_inner());
                if self.closed.load(Ordering::SeqCst) {
                    return;
                }
                usize::try_from(state.hold_at - state.downstream_bytes)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len())
            };
            let n = match from.read(&mut buffer[..allowed]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buffer[..n]).is_err() {
                break;
            }
            let mut state = self.lock();
            state.downstream_bytes += n as u64;
            self.changed.notify_all();
        }
        let _ = to.shutdown(Shutdown::Write);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
