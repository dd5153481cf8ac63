//! How an API client reaches the server: HTTP/2 when the server offers it
//! (ALPN, as client-go negotiates it), so every concurrent call of a client
//! shares one TLS connection instead of paying a handshake each. kube-rs's
//! own stack offers only HTTP/1.1, where each call in flight needs a
//! connection of its own: a thin ADD with two NADs made three handshakes.
//!
//! The stack is kube-rs's otherwise (proxy tunnel, timeouts, base URI, auth,
//! its retry of 429/503/504); each connection is logged at debug with what
//! its TCP connect (`tcp`) and the connect with its TLS handshake
//! (`tcp+tls`) took, and whether it speaks HTTP/2.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper_util::client::legacy::connect::{proxy::Tunnel, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::{retry::RetryPolicy, ConfigExt};
use tower::{BoxError, Service, ServiceBuilder};

/// A client for `config`, on the current tokio runtime.
pub fn client(config: kube::Config) -> Result<kube::Client, String> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    // Go's default; without it a small request can wait for an ACK.
    tcp.set_nodelay(true);
    let tcp = Timed::new(tcp, "tcp");
    match config.proxy_url.clone() {
        None => with_connector(config, tcp),
        Some(proxy) if proxy.scheme_str() == Some("https") => {
            let to_proxy = https(&config, tcp)?;
            with_connector(config, tunnel(&proxy, to_proxy)?)
        }
        Some(proxy) => with_connector(config, tunnel(&proxy, tcp)?),
    }
}

/// A CONNECT tunnel through `proxy`, with its userinfo as Basic auth.
fn tunnel<C>(proxy: &Uri, connector: C) -> Result<Tunnel<C>, String> {
    let mut t = Tunnel::new(proxy.clone(), connector);
    if let Some((userinfo, _)) = proxy.authority().and_then(|a| a.as_str().split_once('@')) {
        use base64::Engine;
        let plain: Vec<u8> = percent_encoding::percent_decode_str(userinfo).collect();
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(plain)
        );
        t = t.with_auth(
            http::HeaderValue::from_str(&header).map_err(|e| format!("proxy credentials: {e}"))?,
        );
    }
    Ok(t)
}

/// TLS over `connector` with the config's CA, identity and server name,
/// offering h2 and http/1.1.
fn https<C>(
    config: &kube::Config,
    connector: C,
) -> Result<Timed<hyper_rustls::HttpsConnector<C>>, String> {
    let tls = config
        .rustls_client_config()
        .map_err(|e| format!("TLS config: {e}"))?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
                name.clone()
                    .try_into()
                    .map_err(|e| format!("tls-server-name {name:?}: {e}"))?,
            ))
        }
        None => builder,
    };
    Ok(Timed::new(
        builder
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector),
        "tcp+tls",
    ))
}

fn with_connector<C>(config: kube::Config, connector: C) -> Result<kube::Client, String>
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Connection + hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    let mut connector = hyper_timeout::TimeoutConnector::new(https(&config, connector)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    // client-go's: a ping after 30 s without a frame, the connection
    // dropped when its answer takes 15 s (a dead peer, a lost route).
    let http = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(15))
        .http2_keep_alive_while_idle(true)
        .build::<_, kube::client::Body>(connector);
    let auth = config
        .auth_layer()
        .map_err(|e| format!("credentials: {e}"))?;
    let headers = config
        .extra_headers_layer()
        .map_err(|e| format!("headers: {e}"))?;
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| tower::retry::RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(auth)
        .layer(headers)
        .map_err(BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// A connector that logs what each connection took (`what`: the stage).
#[derive(Clone)]
struct Timed<C> {
    inner: C,
    what: &'static str,
}

impl<C> Timed<C> {
    fn new(inner: C, what: &'static str) -> Self {
        Self { inner, what }
    }
}

impl<C> Service<Uri> for Timed<C>
where
    C: Service<Uri>,
    C::Response: Connection,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let what = self.what;
        let started = Instant::now();
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let out = connecting.await;
            let ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1e3);
            match &out {
                Ok(c) => tracing::debug!(
                    stage = what,
                    duration_ms = ms,
                    h2 = c.connected().is_negotiated_h2(),
                    "API connection"
                ),
                Err(_) => tracing::debug!(stage = what, duration_ms = ms, "API connection failed"),
            }
            out
        })
    }
}
