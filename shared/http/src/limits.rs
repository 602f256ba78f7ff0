//! Where the rate limits meet HTTP: the client's IP (API Gateway's `sourceIp` under
//! Lambda, the socket's peer locally; never a header a client can set) and 429s with
//! `Retry-After`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use pipes_core::Platform;
use pipes_core::usecases::limits::{Limited, admit};

/// The client's IP, when the host knows it (tests driving the router in process do not).
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) =
            parts
                .extensions
                .get::<lambda_http::request::RequestContext>()
        {
            return Ok(Self(ctx.http.source_ip.clone()));
        }
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string()),
        ))
    }
}

/// Counts a request to a public route against its client IP's limit.
pub async fn per_ip(p: &Platform, ip: &ClientIp) -> Result<(), Limited> {
    match ip.0.as_deref().map(bucket_of) {
        Some(bucket) => {
            admit(
                &*p.store,
                &*p.clock,
                &format!("ip:{bucket}"),
                p.limits.per_ip,
            )
            .await
        }
        None => Ok(()),
    }
}

/// An IPv4 address, or an IPv6 address's /64 (one client holds a whole /64).
fn bucket_of(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or_else(String::new, |v4| v4.to_string()),
        _ => ip.to_owned(),
    }
}

/// Counts a callback or progress post against its signup token's limit (by the token's
/// hash: the token itself is never stored).
pub async fn per_token(p: &Platform, token: &str) -> Result<(), Limited> {
    let bucket = format!("tok:{}", pipes_core::SecretHash::of(token).as_str());
    admit(&*p.store, &*p.clock, &bucket, p.limits.per_token).await
}

/// Counts an on-demand health check against the App's budget.
pub async fn per_app_checks(p: &Platform, app: &pipes_core::AppId) -> Result<(), Limited> {
    admit(
        &*p.store,
        &*p.clock,
        &format!("check:{app}"),
        p.limits.checks_per_app,
    )
    .await
}
