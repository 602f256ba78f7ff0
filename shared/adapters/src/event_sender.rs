//! Sends partner events over HTTPS (reqwest, rustls): every address a host resolves to
//! is checked before connecting (never loopback, private, link-local or metadata
//! addresses; loopback only under `pipes dev`), IP-literal hosts are checked the same
//! way, redirects are not followed, and the whole attempt ends after 10 s.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pipes_core::events::{DELIVERY_TIMEOUT, EndpointUrl, MAX_RESPONSE_KEPT, address_allowed};
use pipes_core::usecases::events::{EventSender, SendResult};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Resolves with the system resolver, then refuses names with a forbidden address
/// (all of them are checked: a name mixing public and private addresses is refused).
#[derive(Debug)]
struct CheckedResolver {
    allow_loopback: bool,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err("the host has no address".into());
            }
            // The address is not named: an App must not learn how internal names resolve.
            if addrs
                .iter()
                .any(|a| !address_allowed(a.ip(), allow_loopback))
            {
                return Err("the host resolves to a forbidden address".into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The `EventSender` for every host.
#[derive(Debug, Clone)]
pub struct HttpEventSender {
    client: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
    allow_loopback: bool,
}

impl HttpEventSender {
    /// `allow_loopback`: `pipes dev` (partner endpoints on the developer's machine).
    pub fn new(allow_loopback: bool) -> Self {
        Self {
            client: Arc::default(),
            allow_loopback,
        }
    }

    /// Built on first use (a function that never delivers never builds it).
    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .timeout(DELIVERY_TIMEOUT)
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .user_agent("Pipes.bot-Webhooks/1")
                    .tls_certs_only(crate::config::web_roots())
                    .dns_resolver(CheckedResolver {
                        allow_loopback: self.allow_loopback,
                    })
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

fn failed(started: Instant, detail: String) -> SendResult {
    SendResult {
        status: None,
        duration_ms: started.elapsed().as_millis() as u64,
        detail: Some(detail),
    }
}

#[async_trait]
impl EventSender for HttpEventSender {
    async fn send(&self, url: &EndpointUrl, signature: &str, body: Vec<u8>) -> SendResult {
        let started = Instant::now();
        // IP-literal hosts never reach the resolver: check them here.
        if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = url.url().host() {
            let ip: Option<IpAddr> = match url.url().host() {
                Some(url::Host::Ipv4(v4)) => Some(v4.into()),
                Some(url::Host::Ipv6(v6)) => Some(v6.into()),
                _ => None,
            };
            if let Some(ip) = ip
                && !address_allowed(ip, self.allow_loopback)
            {
                return failed(started, "forbidden address".to_owned());
            }
        }
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return failed(started, format!("HTTP client: {e}")),
        };
        let res = client
            .post(url.url().clone())
            .header("content-type", "application/json")
            .header("pipes-signature", signature)
            .body(body)
            .send()
            .await;
        match res {
            Ok(mut r) => {
                let status = r.status().as_u16();
                // Only the first KiB is read: an endpoint streaming a huge answer cannot
                // fill the worker's memory.
                let mut kept: Vec<u8> = Vec::new();
                while kept.len() < MAX_RESPONSE_KEPT {
                    match r.chunk().await {
                        Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                        _ => break,
                    }
                }
                kept.truncate(MAX_RESPONSE_KEPT);
                drop(r);
                let detail =
                    (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned());
                SendResult {
                    status: Some(status),
                    duration_ms: started.elapsed().as_millis() as u64,
                    detail,
                }
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out after 10 s".to_owned()
                } else if e.is_connect() {
                    // The resolver's refusal is in the chain.
                    let mut msg = "could not connect".to_owned();
                    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
                    while let Some(s) = src {
                        if s.to_string().contains("forbidden address") {
                            msg = s.to_string();
                        }
                        src = s.source();
                    }
                    msg
                } else {
                    "the request failed".to_owned()
                };
                failed(started, why)
            }
        }
    }
}
