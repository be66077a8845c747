//! Egress through `delivery.proxy`, an HTTP CONNECT proxy (for a fixed
//! outbound IP). The target's name is resolved and vetted here, as for every
//! delivery, and the proxy is asked to CONNECT to the vetted *address*,
//! never to a name it would resolve itself (which would let a merchant's
//! URL reach an internal host through the proxy). Inside the tunnel, TLS
//! verifies the target's host name as usual. Proxy variables of the
//! environment (`HTTPS_PROXY`, …) are never used.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use reqwest::header::{HeaderMap, HeaderValue, HOST, USER_AGENT};
use rustls::pki_types::ServerName;
use rustls_platform_verifier::BuilderVerifierExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::{Host, Url};

use crate::delivery::target::{self, TargetPolicy};
use crate::error::{AppError, AppResult};

/// Why a request through the proxy did not get an answer.
#[derive(Debug)]
pub enum ProxyError {
    /// The target's addresses are not allowed.
    Rejected(String),
    Timeout(String),
    /// The proxy could not be reached, or refused the tunnel.
    Connect(String),
    /// TLS or HTTP inside the tunnel failed.
    Request(String),
}

pub struct ProxyClient {
    /// `host:port` of the proxy.
    proxy: String,
    tls: tokio_rustls::TlsConnector,
    policy: TargetPolicy,
    connect_timeout: Duration,
    user_agent: HeaderValue,
}

impl ProxyClient {
    /// For `delivery.proxy` (`http://host:port`, validated with the config).
    pub fn new(
        proxy_url: &str,
        policy: TargetPolicy,
        connect_timeout: Duration,
        user_agent: &str,
    ) -> AppResult<ProxyClient> {
        let url = Url::parse(proxy_url)
            .map_err(|_| AppError::config("delivery.proxy: expected http://HOST:PORT"))?;
        let proxy = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(80)
        );
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_platform_verifier())
            .map_err(|e| AppError::internal(format!("TLS set-up for delivery.proxy: {e}")))?
            .with_no_client_auth();
        Ok(ProxyClient {
            proxy,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            policy,
            connect_timeout,
            user_agent: HeaderValue::from_str(user_agent)
                .map_err(|_| AppError::internal("user agent is not a header value"))?,
        })
    }

    /// POSTs `body` to `url` through a tunnel to its vetted address.
    pub async fn post(
        &self,
        url: &Url,
        mut headers: HeaderMap,
        body: String,
    ) -> Result<reqwest::Response, ProxyError> {
        let mut tunnel = Err(ProxyError::Rejected("no address".into()));
        for addr in self.vetted_addresses(url).await? {
            tunnel = self.tunnel(addr).await;
            if tunnel.is_ok() {
                break;
            }
        }
        let tunnel = tunnel?;
        let host = url.host_str().unwrap_or_default().to_string();
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        headers.insert(
            HOST,
            HeaderValue::from_str(&authority)
                .map_err(|_| ProxyError::Request("bad host".into()))?,
        );
        headers.insert(USER_AGENT, self.user_agent.clone());
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut request = hyper::Request::post(path)
            .body(reqwest::Body::from(body))
            .map_err(|e| ProxyError::Request(e.to_string()))?;
        *request.headers_mut() = headers;
        if url.scheme() == "https" {
            let name = server_name(url)?;
            let tls = self
                .tls
                .connect(name, tunnel)
                .await
                .map_err(|e| ProxyError::Request(format!("TLS through the proxy: {e}")))?;
            exchange(TokioIo::new(tls), request).await
        } else {
            exchange(TokioIo::new(tunnel), request).await
        }
    }

    /// The target's addresses the policy allows, in the resolver's order.
    async fn vetted_addresses(&self, url: &Url) -> Result<Vec<SocketAddr>, ProxyError> {
        let port = url.port_or_known_default().unwrap_or(443);
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(ProxyError::Rejected("the URL has no host".into())),
        };
        target::resolve_vetted(&host, port, self.policy)
            .await
            .map_err(|e| match target::rejection(e.as_ref()) {
                Some(why) => ProxyError::Rejected(why),
                None => ProxyError::Connect(format!("resolving {host}: {e}")),
            })
    }

    /// A TCP connection to the proxy, tunnelled to `addr`.
    async fn tunnel(&self, addr: SocketAddr) -> Result<TcpStream, ProxyError> {
        let open = async {
            let mut s = TcpStream::connect(&self.proxy)
                .await
                .map_err(|e| ProxyError::Connect(format!("connecting to delivery.proxy: {e}")))?;
            s.set_nodelay(true).ok();
            let connect = format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            s.write_all(connect.as_bytes())
                .await
                .map_err(|e| ProxyError::Connect(format!("writing to delivery.proxy: {e}")))?;
            let status = read_connect_reply(&mut s).await?;
            if status != 200 {
                return Err(ProxyError::Connect(format!(
                    "delivery.proxy answered {status} to CONNECT"
                )));
            }
            Ok(s)
        };
        tokio::time::timeout(self.connect_timeout, open)
            .await
            .map_err(|_| {
                ProxyError::Timeout("connecting through delivery.proxy timed out".into())
            })?
    }
}

fn server_name(url: &Url) -> Result<ServerName<'static>, ProxyError> {
    let name = match url.host() {
        Some(Host::Domain(d)) => ServerName::try_from(d.to_string()).ok(),
        Some(Host::Ipv4(ip)) => Some(ServerName::IpAddress(std::net::IpAddr::V4(ip).into())),
        Some(Host::Ipv6(ip)) => Some(ServerName::IpAddress(std::net::IpAddr::V6(ip).into())),
        None => None,
    };
    name.ok_or_else(|| ProxyError::Request("the URL's host is not a TLS server name".into()))
}

/// The status of the proxy's answer to CONNECT (its head, at most 8 KiB).
async fn read_connect_reply(s: &mut TcpStream) -> Result<u16, ProxyError> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(ProxyError::Connect(
                "delivery.proxy's answer is too long".into(),
            ));
        }
        let n = s
            .read(&mut byte)
            .await
            .map_err(|e| ProxyError::Connect(format!("reading from delivery.proxy: {e}")))?;
        if n == 0 {
            return Err(ProxyError::Connect(
                "delivery.proxy closed the connection".into(),
            ));
        }
        head.push(byte[0]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(ProxyError::Connect(
            "delivery.proxy's answer is not HTTP".into(),
        )),
    }
}

/// One HTTP/1.1 exchange on an established stream.
async fn exchange<I>(
    io: I,
    request: hyper::Request<reqwest::Body>,
) -> Result<reqwest::Response, ProxyError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ProxyError::Request(format!("HTTP through the proxy: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ProxyError::Request(format!("HTTP through the proxy: {e}")))?;
    Ok(reqwest::Response::from(response.map(reqwest::Body::wrap)))
}
