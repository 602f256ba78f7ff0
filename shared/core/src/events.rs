//! Partner events: what an App is told (signups, numbers, forwarded Meta changes), its
//! one webhook endpoint with its signing secret, the signature, and the retry schedule.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crypto::Sealed;
use crate::ids::AppId;

/// How long events are kept (and listed).
pub const RETENTION: Duration = Duration::days(30);
/// How long a rotated-out secret keeps signing alongside the new one.
pub const SECRET_OVERLAP: Duration = Duration::hours(24);
/// A delivery not answered 2xx within this is a failure.
pub const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The most response body kept per attempt.
pub const MAX_RESPONSE_KEPT: usize = 1024;

/// The kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "signup.completed")]
    SignupCompleted,
    #[serde(rename = "signup.abandoned")]
    SignupAbandoned,
    #[serde(rename = "signup.interrupted")]
    SignupInterrupted,
    #[serde(rename = "number.connected")]
    NumberConnected,
    #[serde(rename = "number.health_changed")]
    NumberHealthChanged,
    #[serde(rename = "number.removed")]
    NumberRemoved,
    #[serde(rename = "whatsapp.webhook")]
    WhatsappWebhook,
    #[serde(rename = "ping")]
    Ping,
}

impl EventType {
    pub const ALL: [Self; 8] = [
        Self::SignupCompleted,
        Self::SignupAbandoned,
        Self::SignupInterrupted,
        Self::NumberConnected,
        Self::NumberHealthChanged,
        Self::NumberRemoved,
        Self::WhatsappWebhook,
        Self::Ping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignupCompleted => "signup.completed",
            Self::SignupAbandoned => "signup.abandoned",
            Self::SignupInterrupted => "signup.interrupted",
            Self::NumberConnected => "number.connected",
            Self::NumberHealthChanged => "number.health_changed",
            Self::NumberRemoved => "number.removed",
            Self::WhatsappWebhook => "whatsapp.webhook",
            Self::Ping => "ping",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where an event's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    Delivered,
    /// Every attempt of the schedule failed.
    Failed,
    /// The App had no endpoint when the event was to be sent.
    NoEndpoint,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::NoEndpoint => "no_endpoint",
        }
    }
}

/// One delivery attempt, as the event log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status (none: no answer — refused, timed out, blocked).
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// Why it failed when there is no status, or the start of the response body.
    pub detail: Option<String>,
}

/// An event for one App. `id` is derived from what caused it, so an event emitted twice
/// (a retried job) is stored once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub created_at: DateTime<Utc>,
    pub app_id: AppId,
    pub data: Value,
    pub delivery: DeliveryStatus,
    /// The last [`MAX_ATTEMPTS_KEPT`] attempts, oldest first.
    pub attempts: Vec<Attempt>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The run of the retry schedule (a redelivery starts the next): jobs of an older
    /// run are dropped, so one event never has two runs going.
    #[serde(default)]
    pub run: u32,
    /// Attempts made in this run (the next job must be attempt `run_attempts + 1`).
    #[serde(default)]
    pub run_attempts: u32,
}

/// The most attempts an event keeps (its record stays small whatever happens).
pub const MAX_ATTEMPTS_KEPT: usize = 50;

impl Event {
    /// A new event; `cause` names what caused it uniquely (e.g. the number, its version).
    pub fn new(
        app_id: AppId,
        kind: EventType,
        cause: &str,
        created_at: DateTime<Utc>,
        data: Value,
    ) -> Self {
        let digest = Sha256::digest(format!("{app_id}|{}|{cause}", kind.as_str()));
        // Time first (hex millis), so ids sort by creation.
        let id = format!(
            "evt_{:012x}{}",
            created_at.timestamp_millis().max(0),
            &hex::encode(digest)[..20]
        );
        Self {
            id,
            kind,
            created_at,
            app_id,
            data,
            delivery: DeliveryStatus::Pending,
            attempts: Vec::new(),
            next_attempt_at: Some(created_at),
            run: 0,
            run_attempts: 0,
        }
    }

    /// The body sent to the endpoint (and shown by the API).
    pub fn body(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "type": self.kind.as_str(),
            "createdAt": self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "appId": self.app_id,
            "data": self.data,
        })
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        self.created_at + RETENTION
    }
}

/// Whether an event id looks like ours (a path parameter).
pub fn is_event_id(s: &str) -> bool {
    s.len() == 36 && s.starts_with("evt_") && s[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The delays after the 1st, 2nd, ... failed attempt: about 10 s, 1 min, 5 min, 30 min,
/// 2 h, 6 h, then every 12 h for 3 days. After the last, the event is `failed`.
pub const RETRY_SCHEDULE: [Duration; 12] = [
    Duration::seconds(10),
    Duration::minutes(1),
    Duration::minutes(5),
    Duration::minutes(30),
    Duration::hours(2),
    Duration::hours(6),
    Duration::hours(12),
    Duration::hours(12),
    Duration::hours(12),
    Duration::hours(12),
    Duration::hours(12),
    Duration::hours(12),
];

/// When to try again after `failed_attempts` failures (`None`: give up).
pub fn next_retry(failed_attempts: usize, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    failed_attempts
        .checked_sub(1)
        .and_then(|i| RETRY_SCHEDULE.get(i))
        .map(|d| now + *d)
}

/// An App's webhook endpoint (stored whole as a JSON record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub app_id: AppId,
    pub url: EndpointUrl,
    /// The signing secret, sealed like every secret.
    pub secret: Sealed,
    /// The previous secret, signing alongside until the time given.
    pub previous: Option<(Sealed, DateTime<Utc>)>,
    pub created_at: DateTime<Utc>,
    /// Set when an event failed every attempt; cleared by the next success. Stored
    /// beside the record (the worker sets it without rewriting the endpoint).
    #[serde(default, skip_serializing)]
    pub failing_since: Option<DateTime<Utc>>,
}

/// A partner endpoint URL: https (plain http only to localhost, and only where allowed),
/// no credentials, no fragment, at most 2,048 characters. Whether the host resolves to a
/// public address is checked at each delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointUrl(url::Url);

/// A stored URL was validated when it was written (the local-http rule included). Its
/// length is not checked again: an older version limited only the raw input, and what
/// it stored must stay readable.
impl TryFrom<String> for EndpointUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse_with(&s, true, false).or_else(|_| Self::parse_with(&s, false, false))
    }
}

impl From<EndpointUrl> for String {
    fn from(u: EndpointUrl) -> String {
        u.0.into()
    }
}

impl EndpointUrl {
    pub fn parse(s: &str, allow_local_http: bool) -> Result<Self, String> {
        Self::parse_with(s, allow_local_http, true)
    }

    fn parse_with(s: &str, allow_local_http: bool, limit: bool) -> Result<Self, String> {
        if limit && s.len() > 2048 {
            return Err("must be at most 2048 characters".into());
        }
        let u = url::Url::parse(s).map_err(|_| "must be an absolute URL".to_owned())?;
        // Parsing percent-encodes what needs it: the limit holds for what is stored.
        if limit && u.as_str().len() > 2048 {
            return Err("must be at most 2048 characters once percent-encoded".into());
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err("must not carry credentials".into());
        }
        if u.fragment().is_some() {
            return Err("must not carry a fragment".into());
        }
        let host = u.host_str().unwrap_or_default();
        match u.scheme() {
            "https" if !host.is_empty() => Ok(Self(u)),
            "http" if allow_local_http && is_localhost(host) => Ok(Self(u)),
            "http" if allow_local_http => Err("plain http is allowed only to localhost".into()),
            _ => Err("must be an https URL".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

fn is_localhost(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// Whether a delivery may connect to `ip`: never to loopback, private, link-local
/// (the cloud metadata service lives there), shared, documentation, multicast or
/// unspecified addresses. `allow_loopback` is for `pipes dev` only.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                return allow_loopback;
            }
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
                || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return address_allowed(IpAddr::V4(v4), allow_loopback);
            }
            let seg = v6.segments();
            if seg[..6].iter().all(|s| *s == 0) && !v6.is_loopback() && !v6.is_unspecified() {
                // IPv4-compatible (::a.b.c.d), deprecated: never a partner's address.
                return false;
            }
            if v6.is_loopback() {
                return allow_loopback;
            }
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local (incl. fd00:ec2::254)
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || seg[0] == 0x2002 // 6to4: embeds any IPv4 address
                || (seg[0] == 0x2001 && seg[1] == 0) // Teredo: embeds any IPv4 address
                || (seg[0] == 0x64 && seg[1] == 0xff9b)) // NAT64 to anything
        }
    }
}

/// `Pipes-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`: HMAC-SHA256 of
/// `"<t>.<body>"` under each signing secret (two while a rotated secret overlaps).
pub fn signature_header(secrets: &[&[u8]], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(hmac_sha256(
            secret,
            &[t.to_string().as_bytes(), b".", body],
        )));
    }
    header
}

/// HMAC-SHA256 over the concatenated parts.
#[allow(clippy::expect_used)]
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The signed redirect's `signature`: hex HMAC-SHA256 under the endpoint secret of the
/// other query parameters, sorted by name, as `name=value` joined by `&` (values as
/// sent, percent-decoded).
pub fn redirect_signature(secret: &[u8], params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = params.iter().collect();
    sorted.sort();
    let canonical = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    hex::encode(hmac_sha256(secret, &[canonical.as_bytes()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_url_is_limited_once_percent_encoded() {
        // Found by schemathesis: accepted at 2,000 characters, then unreadable from the
        // store at 2,093 once its spaces were percent-encoded.
        let spaced = format!("https://partner.example/a{}b", " ".repeat(724));
        assert!(spaced.len() <= 2048);
        assert!(EndpointUrl::parse(&spaced, false).is_err());
        let ok = EndpointUrl::parse(
            &format!("https://partner.example/a{}b", " ".repeat(600)),
            false,
        )
        .unwrap();
        assert!(EndpointUrl::try_from(String::from(ok)).is_ok());
        // What an older version stored past the limit still reads back.
        let stored = format!("https://partner.example/a{}b", "%20".repeat(724));
        assert!(EndpointUrl::try_from(stored).is_ok());
    }

    #[test]
    fn the_schedule_is_the_documented_one() {
        let now = Utc::now();
        let delays: Vec<i64> = (1..=13)
            .map_while(|n| next_retry(n, now))
            .map(|t| (t - now).num_seconds())
            .collect();
        assert_eq!(
            delays,
            [
                10, 60, 300, 1800, 7200, 21600, 43200, 43200, 43200, 43200, 43200, 43200
            ]
        );
        assert_eq!(next_retry(0, now), None);
        // The 12 h retries span 3 days.
        let twelve_hourly: i64 = delays.iter().filter(|d| **d == 43200).sum();
        assert_eq!(twelve_hourly, 3 * 86400);
    }

    #[test]
    fn event_ids_are_stable_and_time_ordered() {
        let app = AppId::generate();
        let t = Utc::now();
        let a = Event::new(app.clone(), EventType::Ping, "x", t, Value::Null);
        let b = Event::new(app.clone(), EventType::Ping, "x", t, Value::Null);
        let c = Event::new(
            app,
            EventType::Ping,
            "y",
            t + Duration::seconds(1),
            Value::Null,
        );
        assert_eq!(a.id, b.id);
        assert!(c.id > a.id);
        assert!(is_event_id(&a.id), "{}", a.id);
        assert!(!is_event_id("evt_../../x"));
    }

    #[test]
    fn endpoint_urls() {
        assert!(EndpointUrl::parse("https://partner.example/hooks", false).is_ok());
        assert!(EndpointUrl::parse("http://localhost:4000/h", true).is_ok());
        assert!(EndpointUrl::parse("http://127.0.0.1:4000/h", true).is_ok());
        for bad in [
            "http://localhost:4000/h",
            "http://partner.example/h",
            "ftp://partner.example/h",
            "https://user:pw@partner.example/h",
            "https://partner.example/h#x",
            "/relative",
        ] {
            assert!(EndpointUrl::parse(bad, false).is_err(), "{bad}");
        }
        assert!(EndpointUrl::parse("http://partner.example/h", true).is_err());
    }

    #[test]
    fn addresses() {
        for bad in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::",
            "::10.0.0.1",
            "::127.0.0.1",
            "2002:a00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "192.88.99.1",
        ] {
            assert!(!address_allowed(bad.parse().unwrap(), false), "{bad}");
        }
        for good in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(address_allowed(good.parse().unwrap(), false), "{good}");
        }
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true));
        assert!(!address_allowed("10.0.0.1".parse().unwrap(), true));
    }

    #[test]
    fn signatures_verify_like_the_readme_says() {
        let body = br#"{"id":"evt_1"}"#;
        let h = signature_header(&[b"whsec_a", b"whsec_b"], 1_700_000_000, body);
        let parts: Vec<&str> = h.split(',').collect();
        assert_eq!(parts[0], "t=1700000000");
        let expected = hex::encode(hmac_sha256(b"whsec_b", &[b"1700000000.", body]));
        assert_eq!(parts[2], format!("v1={expected}"));
        assert_ne!(parts[1], parts[2]);
    }

    #[test]
    fn redirect_signature_is_order_independent() {
        let a = redirect_signature(b"k", &[("status", "completed"), ("sessionId", "s")]);
        let b = redirect_signature(b"k", &[("sessionId", "s"), ("status", "completed")]);
        let c = redirect_signature(b"k", &[("sessionId", "s"), ("status", "failed")]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
