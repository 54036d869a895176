//! The connection layer of the upstream leg: one pooled HTTP/1.1 client (hyper-util's, over
//! hyper-rustls with the platform's roots plus `--upstream-ca-file`) that sends the requests the
//! generated client builds, bounded in time, and reads each body up to the cap.
//!
//! Why not reqwest's own `execute`: on the request path it parsed the same URL three more times,
//! ran its redirect and retry layers for a client that follows no redirect and retries nothing,
//! and rebuilt the response: about a sixth of the gateway's instructions per call. reqwest still
//! builds each request (progenitor's generated code asks for a `reqwest::RequestBuilder`) and the
//! result is handed back as a `reqwest::Response`, so the generated code is unchanged.
//!
//! One pool per serving lane (`lanes`), plus one for every other thread (start-up's probe, the
//! process's runtime): a pooled connection is driven by a task on the runtime that opened it, so
//! a lane that borrowed another's connection would wake that lane's thread twice per call.
//!
//! It also owns `UpstreamOptions` (what shapes these connections), which `upstream`
//! re-exports; it imports nothing from `upstream`.
//!
//! Invariant: a failure never becomes a `reqwest::Error` (it cannot be built outside reqwest);
//! it is a `Failure` with the words a caller reads, which `upstream` turns into
//! `DispatchError::Transport`.

use axum::http::HeaderValue;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;

/// How the gateway talks to the API.
#[derive(Clone, Debug)]
pub struct UpstreamOptions {
    /// Bounds one whole request, so a slow upstream becomes an error, not a hang.
    pub timeout: Duration,
    /// Idle connections kept to the API, about this many in all: each lane's pool, and the pool
    /// for other threads, keeps its share rounded up. And for how long.
    pub pool_idle_per_host: usize,
    pub pool_idle_timeout: Duration,
    /// Longest response body read from the API; a longer one becomes an error, never buffered.
    pub max_body_bytes: usize,
    /// PEM CA certificates to trust besides the system's (an internal CA).
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for UpstreamOptions {
    fn default() -> UpstreamOptions {
        UpstreamOptions {
            timeout: Duration::from_secs(30),
            pool_idle_per_host: 64,
            pool_idle_timeout: Duration::from_secs(30),
            max_body_bytes: 8 * 1024 * 1024,
            extra_ca_pem: None,
        }
    }
}

/// How a request failed before the API answered it: in words for the caller, and whether it
/// ran out of time (a timeout is counted apart from an unreachable API).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub message: String,
    pub timed_out: bool,
}

impl Failure {
    fn new(message: String) -> Failure {
        Failure {
            message,
            timed_out: false,
        }
    }
}

/// What came back: the API's status, headers and body (whole, within the cap), or a body over
/// the cap (its length as far as known, and the status it came with).
pub enum Received {
    Answer(axum::http::Response<Bytes>),
    TooLarge {
        length: usize,
        status: axum::http::StatusCode,
    },
}

#[derive(Clone, Debug)]
pub struct UpstreamClient {
    /// `pools[0]` for threads that are no lane, `pools[1 + n]` for lane n.
    pools: Arc<[Pool]>,
    /// `Host` for every request, made once: hyper-util would otherwise format it per request.
    host: HeaderValue,
    /// The API's scheme, for each request's URI (whose authority is `POOL_KEY`).
    scheme: axum::http::uri::Scheme,
    timeout: Duration,
    max_body_bytes: usize,
}

type Pool = Client<ToApi<HttpsConnector<Dialer>>, reqwest::Body>;

/// The authority of every request's URI, in place of the API's.
///
/// Why: hyper-util keys its pool by scheme and authority and hashes the authority byte by byte
/// with SipHash, three times per request (about 3 k instructions for `127.0.0.1:8080`, and an
/// `Authority` compare). One client talks to one API, so a short constant key loses nothing.
/// It never leaves the process: the connector (`ToApi`) dials the API whatever the key says,
/// `Host` is the API's, and the request line is written in origin form (the only proxy is a
/// CONNECT tunnel, so no connection asks for absolute form).
const POOL_KEY: &str = "api";

/// How a request that ran past `--call-timeout-secs` is described.
const TIMED_OUT: &str = "the request timed out";

impl UpstreamClient {
    /// A client for the API at `base_url`, with a pool for each of `lanes` lanes.
    pub fn new(
        base_url: &str,
        options: &UpstreamOptions,
        lanes: usize,
    ) -> Result<UpstreamClient, String> {
        let api: axum::http::Uri = base_url
            .parse()
            .map_err(|e| format!("the upstream URL {base_url}: {e}"))?;
        let host = host_header(&api)
            .ok_or_else(|| format!("the upstream URL {base_url} names no host"))?;
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let extra_roots = options
            .extra_ca_pem
            .as_deref()
            .map(extra_roots)
            .transpose()?;
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?;
        let tls = if api.scheme_str() == Some("https") {
            let verifier = match extra_roots {
                None => rustls_platform_verifier::Verifier::new(provider),
                Some(roots) => {
                    rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider)
                }
            }
            .map_err(|e| format!("cannot load the trusted roots: {e}"))?;
            tls.dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        } else {
            // Plain HTTP to the API (the sandbox, a sidecar): no TLS is ever made, so the
            // platform's roots are not read (a fifth of start-up, 19 M instructions). The API
            // never redirects, and a proxy is reached by CONNECT over plain HTTP.
            tls.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        // A request is written whole before the answer is awaited; Nagle would hold its tail.
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(options.timeout.min(Duration::from_secs(10))));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            // Offers ALPN http/1.1 itself.
            .enable_http1()
            .wrap_connector(Dialer::for_api(&api, tcp));
        let connector = ToApi::new(connector, api.clone());
        let lanes = lanes.max(1);
        let pools = (0..=lanes)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    // Bounded: a burst of sessions must not leave a thousand idle sockets.
                    .pool_max_idle_per_host(options.pool_idle_per_host.div_ceil(lanes))
                    .pool_idle_timeout(options.pool_idle_timeout)
                    .pool_timer(TokioTimer::new())
                    .build(connector.clone())
            })
            .collect();
        Ok(UpstreamClient {
            pools,
            host,
            scheme: api
                .scheme()
                .cloned()
                .unwrap_or(axum::http::uri::Scheme::HTTP),
            timeout: options.timeout,
            max_body_bytes: options.max_body_bytes,
        })
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Sends `request` and reads its answer, all within the call timeout.
    pub async fn send(&self, request: reqwest::Request) -> Result<Received, Failure> {
        let url = request.url().clone();
        let request = self
            .to_http(request)
            .map_err(|e| Failure::new(format!("the request could not be built: {e}")))?;
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(Ok(Received::Answer(response))) => Ok(Received::Answer(with_url(response, url))),
            Ok(received) => received,
            Err(_) => Err(Failure {
                message: TIMED_OUT.into(),
                timed_out: true,
            }),
        }
    }

    /// `request` for hyper-util: its URI names `POOL_KEY`, not the API (reqwest's own
    /// conversion parsed the whole URL again), and `Host` names the API.
    fn to_http(
        &self,
        mut request: reqwest::Request,
    ) -> Result<axum::http::Request<reqwest::Body>, axum::http::Error> {
        let url = request.url();
        let path_and_query = match url.query() {
            None => axum::http::uri::PathAndQuery::try_from(url.path())?,
            Some(query) => {
                let mut both = String::with_capacity(url.path().len() + 1 + query.len());
                both.push_str(url.path());
                both.push('?');
                both.push_str(query);
                axum::http::uri::PathAndQuery::try_from(both)?
            }
        };
        let mut parts = axum::http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(axum::http::uri::Authority::from_static(POOL_KEY));
        parts.path_and_query = Some(path_and_query);
        // Set field by field: the builder moves the whole request at each step.
        let mut http = axum::http::Request::new(request.body_mut().take().unwrap_or_default());
        *http.uri_mut() = axum::http::Uri::from_parts(parts)?;
        *http.method_mut() = request.method().clone();
        *http.version_mut() = request.version();
        *http.headers_mut() = std::mem::take(request.headers_mut());
        http.headers_mut()
            .entry(axum::http::header::HOST)
            .or_insert_with(|| self.host.clone());
        Ok(http)
    }

    /// The calling thread's pool: its lane's, or the one for threads that are no lane.
    fn pool(&self) -> &Pool {
        crate::lanes::current()
            .and_then(|lane| self.pools.get(1 + lane))
            .unwrap_or(&self.pools[0])
    }

    async fn exchange(
        &self,
        request: axum::http::Request<reqwest::Body>,
    ) -> Result<Received, Failure> {
        let response = self
            .pool()
            .request(request)
            .await
            .map_err(|e| Failure::new(describe(&e)))?;
        let limit = self.max_body_bytes;
        if let Some(length) = response
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && length > limit as u64
        {
            return Ok(Received::TooLarge {
                length: usize::try_from(length).unwrap_or(usize::MAX),
                status: response.status(),
            });
        }
        let (parts, body) = response.into_parts();
        // Read up to the limit and no further: past it the connection is dropped.
        let limited = http_body_util::Limited::new(body, limit);
        match limited.collect().await {
            Ok(collected) => Ok(Received::Answer(axum::http::Response::from_parts(
                parts,
                collected.to_bytes(),
            ))),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                Ok(Received::TooLarge {
                    length: limit + 1,
                    status: parts.status,
                })
            }
            Err(error) => Err(Failure::new(format!(
                "the response could not be read: {}",
                tls_failure(error.as_ref()).unwrap_or_else(|| error.to_string())
            ))),
        }
    }
}

/// The `Host` header for requests to `api`, as hyper-util would write it: the host, and the port
/// unless it is the scheme's default.
fn host_header(api: &axum::http::Uri) -> Option<HeaderValue> {
    let host = api.host()?;
    let default_port = if api.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let value = match api.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    HeaderValue::from_str(&value).ok()
}

/// `response`, marked as the answer from `url`. reqwest's `Response` (which progenitor reads)
/// carries a URL: without this mark, converting to it parses a placeholder URL on every call.
fn with_url(
    mut response: axum::http::Response<Bytes>,
    url: reqwest::Url,
) -> axum::http::Response<Bytes> {
    use reqwest::ResponseBuilderExt;
    if let Ok(marked) = axum::http::Response::builder().url(url).body(()) {
        response
            .extensions_mut()
            .extend(marked.into_parts().0.extensions);
    }
    response
}

/// The PEM file's certificates, or why it holds none.
fn extra_roots(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the upstream CA file holds no usable PEM certificate: {e}"))?;
    if certificates.is_empty() {
        return Err("the upstream CA file holds no PEM certificate".into());
    }
    Ok(certificates)
}

fn describe(error: &hyper_util::client::legacy::Error) -> String {
    if let Some(tls) = tls_failure(error) {
        return tls;
    }
    if error.is_connect() {
        // What the socket said, in words that name it (the API's address is left out).
        let mut cause = std::error::Error::source(error);
        let mut io_kind = None;
        let mut resolving = false;
        while let Some(inner) = cause {
            resolving |= inner.to_string() == "dns error";
            if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                io_kind = Some(io.kind());
            }
            cause = inner.source();
        }
        match io_kind {
            _ if resolving => "the API's host name did not resolve".to_string(),
            Some(std::io::ErrorKind::ConnectionRefused) => "the connection was refused".to_string(),
            Some(std::io::ErrorKind::TimedOut) => {
                "connecting timed out (no answer to the connection attempt)".to_string()
            }
            Some(kind) => format!("the connection failed ({kind})"),
            None => "the connection failed".to_string(),
        }
    } else {
        // The cause, without the URL (hyper's errors carry none, but their sources might).
        let mut text = error.to_string();
        let mut cause = std::error::Error::source(error);
        while let Some(inner) = cause {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            cause = inner.source();
        }
        text
    }
}

/// How connections to the API are made: directly, or through the proxy that `HTTPS_PROXY`,
/// `HTTP_PROXY` or `ALL_PROXY` name (unless `NO_PROXY` exempts the API), by an HTTP CONNECT
/// tunnel. Decided once: the API's address is fixed.
#[derive(Clone, Debug)]
enum Dialer {
    Direct(HttpConnector),
    Tunnel(Tunnel<HttpConnector>),
}

type Dialed = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
type DialError = Box<dyn std::error::Error + Send + Sync>;

impl Dialer {
    fn for_api(api: &axum::http::Uri, tcp: HttpConnector) -> Dialer {
        let matcher = hyper_util::client::proxy::matcher::Matcher::from_env();
        match matcher.intercept(api) {
            None => Dialer::Direct(tcp),
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), tcp);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Dialer::Tunnel(tunnel)
            }
        }
    }
}

impl tower_service::Service<axum::http::Uri> for Dialer {
    type Response = Dialed;
    type Error = DialError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Dialed, DialError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), DialError>> {
        match self {
            Dialer::Direct(tcp) => tcp.poll_ready(cx).map_err(Into::into),
            Dialer::Tunnel(tunnel) => tunnel.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, destination: axum::http::Uri) -> Self::Future {
        match self {
            Dialer::Direct(tcp) => {
                let dialing = tcp.call(destination);
                Box::pin(async move { dialing.await.map_err(Into::into) })
            }
            Dialer::Tunnel(tunnel) => {
                let dialing = tunnel.call(destination);
                Box::pin(async move { dialing.await.map_err(Into::into) })
            }
        }
    }
}

/// A connector that dials the API for every connection the pool asks for, whatever the
/// request's URI names (`POOL_KEY`): TLS, its server name and any CONNECT tunnel all see the
/// API's own URL.
///
/// Behind an `Arc`: hyper-util clones its connector several times per request, to prepare a
/// connection it makes only when the pool has none idle; the dialer itself is cloned only then.
#[derive(Clone, Debug)]
struct ToApi<C> {
    shared: Arc<(C, axum::http::Uri)>,
}

impl<C> ToApi<C> {
    fn new(dial: C, api: axum::http::Uri) -> ToApi<C> {
        ToApi {
            shared: Arc::new((dial, api)),
        }
    }
}

impl<C> tower_service::Service<axum::http::Uri> for ToApi<C>
where
    C: tower_service::Service<axum::http::Uri> + Clone,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    /// Always ready, as every connector under it is: hyper-util's `HttpConnector` (its
    /// getaddrinfo resolver is always ready), and the tunnel and hyper-rustls, which pass that on.
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), C::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _pool_key: axum::http::Uri) -> Self::Future {
        let (dial, api) = &*self.shared;
        dial.clone().call(api.clone())
    }
}

/// What a certificate problem somewhere in `error`'s causes is, in words with the fix.
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        // An io::Error's source() skips the error it wraps; look at that one too.
        let wrapped = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        let rustls_error = current
            .downcast_ref::<rustls::Error>()
            .or_else(|| wrapped.and_then(|inner| inner.downcast_ref::<rustls::Error>()));
        if let Some(rustls::Error::InvalidCertificate(problem)) = rustls_error {
            let what = format!("{problem:?}");
            let trust = "trust its CA with --upstream-ca-file or SSL_CERT_FILE";
            return Some(if what.starts_with("UnknownIssuer") {
                format!("the API's TLS certificate is signed by an unknown authority ({trust})")
            } else if what.starts_with("Expired") {
                "the API's TLS certificate has expired".to_string()
            } else if what.starts_with("NotValidForName") {
                "the API's TLS certificate is not valid for the host name in --upstream".to_string()
            } else if what.starts_with("NotValidYet") {
                "the API's TLS certificate is not valid yet".to_string()
            } else {
                format!("the API's TLS certificate was refused: {problem}")
            });
        }
        cause = wrapped.or_else(|| current.source());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool key never reaches the wire: the request line is in origin form, `Host` is the
    /// API's, and the connection goes to the API's address.
    #[tokio::test]
    async fn the_api_sees_its_own_host_and_an_origin_form_request_line() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}/v1", listener.local_addr().unwrap());
        let answering = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                socket.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let client = UpstreamClient::new(&api, &UpstreamOptions::default(), 1).unwrap();
        let url = reqwest::Url::parse(&format!("{api}/tasks/tsk_1?limit=2")).unwrap();
        let mut request = reqwest::Request::new(reqwest::Method::GET, url);
        request
            .headers_mut()
            .insert("x-kept", HeaderValue::from_static("yes"));
        let Ok(Received::Answer(response)) = client.send(request).await else {
            panic!("no answer");
        };
        assert_eq!(response.status(), 200);
        let head = answering.await.unwrap().to_ascii_lowercase();
        let host = api.trim_start_matches("http://").trim_end_matches("/v1");
        assert!(
            head.starts_with("get /v1/tasks/tsk_1?limit=2 http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nhost: {host}\r\n")), "{head}");
        assert!(head.contains("\r\nx-kept: yes\r\n"), "{head}");
        assert!(!head.contains(POOL_KEY), "{head}");
    }

    #[tokio::test]
    async fn each_lane_sends_through_a_pool_of_its_own() {
        let client = Arc::new(
            UpstreamClient::new("http://127.0.0.1:9", &UpstreamOptions::default(), 2).unwrap(),
        );
        assert_eq!(
            client.pools.len(),
            3,
            "one per lane, and one for other threads"
        );
        assert!(std::ptr::eq(client.pool(), &client.pools[0]));
        let lanes = crate::lanes::Lanes::start(2).unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (tell, told) = tokio::sync::oneshot::channel();
            let client = client.clone();
            lanes.spawn(|| {
                Some(async move {
                    let lane = crate::lanes::current().unwrap();
                    let _ = tell.send((lane, std::ptr::eq(client.pool(), &client.pools[1 + lane])));
                })
            });
            seen.push(told.await.unwrap());
        }
        lanes.stop().await;
        assert_eq!(seen, [(0, true), (1, true)]);
    }

    #[test]
    fn host_is_written_as_hyper_util_would_write_it() {
        for (url, host) in [
            ("http://127.0.0.1:8080", Some("127.0.0.1:8080")),
            ("http://127.0.0.1:80/v1", Some("127.0.0.1")),
            ("https://api.example.com", Some("api.example.com")),
            ("https://api.example.com:443", Some("api.example.com")),
            ("https://api.example.com:80", Some("api.example.com:80")),
            ("http://[::1]:9000", Some("[::1]:9000")),
            ("/relative", None),
        ] {
            let written = host_header(&url.parse().unwrap());
            assert_eq!(written.as_ref().map(|h| h.to_str().unwrap()), host, "{url}");
        }
    }
}
