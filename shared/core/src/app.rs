//! Apps (partner integrations), their public slug and display name, the redirect
//! origins they allow, and the records of their app keys.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::ids::{AppId, KeyId};

/// The App's name in hosted-page URLs: 2 to 40 of `a-z 0-9 -`, starting and ending
/// with a letter or digit.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_ends = !s.starts_with('-') && !s.ends_with('-');
        if (2..=40).contains(&s.len()) && ok_chars && ok_ends {
            Ok(Self(s.to_owned()))
        } else {
            Err("a slug is 2 to 40 of a-z, 0-9 and '-', not starting or ending with '-'".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The App's display name, shown to number owners on the hosted page.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);

impl AppName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let len = s.chars().count();
        if (1..=100).contains(&len) && !s.chars().any(char::is_control) {
            Ok(Self(s.to_owned()))
        } else {
            Err("a name is 1 to 100 characters with no control characters".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An origin (`scheme://host[:port]`) an App allows as the target of its redirect URLs.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectOrigin(String);

impl RedirectOrigin {
    /// Accepts an origin, with or without a trailing `/`; anything with a path, query or
    /// credentials is refused so that an allow-list entry means exactly one origin.
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = Url::parse(s).map_err(|_| "not an absolute URL".to_owned())?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err("an origin has no path, query or fragment".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("an origin has no credentials".into());
        }
        check_scheme(&url)?;
        Ok(Self(url.origin().ascii_serialization()))
    }

    /// The origin of an already validated URL.
    pub(crate) fn of(url: &Url) -> Self {
        Self(url.origin().ascii_serialization())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `https` everywhere; plain `http` only for a local host.
pub(crate) fn check_scheme(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_local_host(url) => Ok(()),
        "http" => Err("plain http is only allowed for localhost and 127.0.0.1".into()),
        _ => Err("must be an absolute https URL".into()),
    }
}

fn is_local_host(url: &Url) -> bool {
    matches!(
        url.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    )
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    )*};
}
display_as_str!(Slug, AppName, RedirectOrigin);

/// A partner integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub id: AppId,
    pub slug: Slug,
    pub name: AppName,
    /// Empty means any redirect origin is accepted.
    pub allowed_origins: Vec<RedirectOrigin>,
    pub created_at: DateTime<Utc>,
    /// How fast the App may call its app-key routes.
    #[serde(default)]
    pub rate_limit: RateLimit,
    /// Marked for development: its signup links may send owners back to plain
    /// `http://localhost` (elsewhere only `pipes dev` allows that).
    #[serde(default)]
    pub development: bool,
}

/// What an operator may set on an App besides its name and origins, stored together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSettings {
    #[serde(default)]
    pub rate_limit: RateLimit,
    #[serde(default)]
    pub development: bool,
}

impl App {
    pub fn settings(&self) -> AppSettings {
        AppSettings {
            rate_limit: self.rate_limit,
            development: self.development,
        }
    }
}

/// An App's request rate on its app-key routes: `per_second` on average, with bursts of
/// up to `burst` (a fixed window of `burst / per_second` seconds admits `burst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 20,
            burst: 100,
        }
    }
}

impl RateLimit {
    /// 1 to 500 per second (one counter item takes its writes); a burst from the rate
    /// to 60 seconds' worth (Retry-After never beyond a minute).
    pub fn new(per_second: u32, burst: u32) -> Result<Self, String> {
        if !(1..=500).contains(&per_second) {
            return Err("the rate must be from 1 to 500 requests per second".into());
        }
        if burst < per_second || burst > per_second * 60 {
            return Err("the burst must be at least the rate and at most 60 times it".into());
        }
        Ok(Self { per_second, burst })
    }

    /// The counting window (whole seconds, at least one).
    pub fn window(self) -> chrono::Duration {
        chrono::Duration::seconds(i64::from(
            self.burst.div_ceil(self.per_second.max(1)).max(1),
        ))
    }
}

/// What is known of one app key besides its hash: enough to list and revoke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppKeyRecord {
    pub key_id: KeyId,
    pub app_id: AppId,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for good in ["demo", "acme-crm", "a1"] {
            assert!(Slug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "Demo",
            "-demo",
            "demo-",
            "de mo",
            "dé",
            &"a".repeat(41),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_are_normalised_and_strict() {
        assert_eq!(
            RedirectOrigin::parse("https://Partner.Example/").map(String::from),
            Ok("https://partner.example".to_owned())
        );
        assert!(RedirectOrigin::parse("http://localhost:8080").is_ok());
        for bad in [
            "https://partner.example/path",
            "http://partner.example",
            "ftp://partner.example",
            "https://u:p@partner.example",
            "partner.example",
        ] {
            assert!(RedirectOrigin::parse(bad).is_err(), "{bad}");
        }
    }
}
