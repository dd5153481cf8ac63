//! Test-only: an HTTP CONNECT proxy on 127.0.0.1 of a netns, as a node's
//! `HTTPS_PROXY` would name, that counts the tunnels it carried and to
//! where, so a test can tell whether the API client went through it.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::background::Background;
use crate::{enter_path, listen_in, Netns};

pub struct ConnectProxy {
    pub addr: SocketAddr,
    /// The `host:port` of every tunnel opened, in order.
    carried: Arc<Mutex<Vec<String>>>,
    _server: Background,
}

/// Reads the request head (up to the blank line, at most 8 KiB).
async fn head(s: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 8192 || s.read(&mut byte).await? == 0 {
            return Err(io::Error::other("no complete request head"));
        }
        buf.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn tunnel(mut client: TcpStream, carried: Arc<Mutex<Vec<String>>>) -> io::Result<()> {
    let head = head(&mut client).await?;
    let target = match head.split_whitespace().collect::<Vec<_>>()[..] {
        ["CONNECT", target, ..] => target.to_string(),
        _ => {
            client
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    let mut upstream = match TcpStream::connect(&target).await {
        Ok(u) => u,
        Err(_) => {
            client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    carried.lock().unwrap().push(target);
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

impl ConnectProxy {
    /// Listens on 127.0.0.1 of `ns` (which must have `lo` up).
    pub fn start(ns: &Netns) -> io::Result<Self> {
        let listener = listen_in(ns, ([127, 0, 0, 1], 0).into())?;
        let addr = listener.local_addr()?;
        let carried = Arc::new(Mutex::new(Vec::new()));
        let counted = carried.clone();
        let ns_path = ns.path();
        let server = Background::spawn(move |mut stop| async move {
            // Upstream connections are made in the netns too.
            if enter_path(&ns_path).is_err() {
                return;
            }
            let listener = TcpListener::from_std(listener).expect("listener");
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    conn = listener.accept() => {
                        let Ok((client, _)) = conn else { continue };
                        tokio::spawn(tunnel(client, counted.clone()));
                    }
                }
            }
        });
        Ok(Self {
            addr,
            carried,
            _server: server,
        })
    }

    /// `http://127.0.0.1:<port>`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every `host:port` tunnelled so far.
    pub fn carried(&self) -> Vec<String> {
        self.carried.lock().unwrap().clone()
    }
}
