//! The shim's side of the socket: one HTTP/1.1 request per connection.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Sends one request and returns the status and body, or a `TimedOut`
/// error when the whole exchange takes longer than `timeout`.
pub async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    match tokio::time::timeout(timeout, exchange(socket, method, path, body)).await {
        Ok(out) => out,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "{method} {path}: no answer within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

async fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "dummy")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(std::io::Error::other)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, body.to_vec()))
}
