//! Identifiers (plain, safe to log) and bearer secrets (never printed), each a newtype
//! that can only hold a well-formed value.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::random;

macro_rules! plain_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh identifier from the OS CSPRNG.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random::base62($len)))
            }

            /// `Some` only for the exact form: prefix then the base62 body.
            pub fn parse(s: &str) -> Option<Self> {
                s.strip_prefix($prefix)
                    .filter(|body| random::is_base62(body, $len))
                    .map(|_| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        $crate::ids::id_string_impls!($name);
    };
}

/// Display, Debug, and the String conversions serde uses, for an id newtype over a
/// `String` with `fn parse(&str) -> Option<Self>`.
macro_rules! id_string_impls {
    ($name:ident) => {
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s).ok_or_else(|| format!("not a {}", stringify!($name)))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}
pub(crate) use id_string_impls;

plain_id!(
    /// An App (a partner integration): `app_` + 20 base62.
    AppId, "app_", 20
);
plain_id!(
    /// A signup session: `ses_` + 20 base62.
    SessionId, "ses_", 20
);
plain_id!(
    /// Names one app key without revealing it, for listing and revocation: `key_` + 16 base62.
    KeyId, "key_", 16
);

macro_rules! bearer_secret {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $len:literal) => {
        $(#[$doc])*
        pub struct $name(SecretString);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh secret from the OS CSPRNG (32 base62 characters, over 190 bits).
            pub fn generate() -> Self {
                Self(SecretString::from(format!("{}{}", $prefix, random::base62($len))))
            }

            /// `Some` only for the exact form; the input is not echoed on failure.
            pub fn parse(s: &str) -> Option<Self> {
                s.strip_prefix($prefix)
                    .filter(|body| random::is_base62(body, $len))
                    .map(|_| Self(SecretString::from(s.to_owned())))
            }

            /// The SHA-256 of the secret: the only form ever stored.
            pub fn hash(&self) -> SecretHash {
                SecretHash::of(self.0.expose_secret())
            }

            /// The plaintext, for the one response that hands it out.
            pub fn expose(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, "[REDACTED]")
            }
        }
    };
}

bearer_secret!(
    /// A partner's app key, `ak_` + 32 base62. Stored only as its hash.
    AppKey, "ak_", 32
);
bearer_secret!(
    /// A one-time signup token, `tok_` + 32 base62. Stored only as its hash.
    SignupToken, "tok_", 32
);

bearer_secret!(
    /// A single-use dashboard login link's token, `dl_` + 32 base62. Stored only as its
    /// hash; valid 15 minutes.
    LoginToken, "dl_", 32
);
bearer_secret!(
    /// A dashboard session's cookie value, `ds_` + 32 base62. Stored only as its hash.
    DashboardCookie, "ds_", 32
);

/// Lower-case hex SHA-256 of a bearer secret: how stores find a key or a token
/// without ever holding the secret.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretHash(String);

impl SecretHash {
    /// The hash of any presented string, well-formed or not, so that checking a
    /// malformed credential costs the same as checking a real one.
    pub fn of(presented: &str) -> Self {
        Self(hex::encode(Sha256::digest(presented.as_bytes())))
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", &self.0[..8])
    }
}

impl TryFrom<String> for SecretHash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "not a SHA-256 hex digest".to_owned())
    }
}

impl From<SecretHash> for String {
    fn from(h: SecretHash) -> String {
        h.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = AppId::generate();
        assert!(id.as_str().starts_with("app_") && id.as_str().len() == 24);
        assert_eq!(AppId::parse(id.as_str()), Some(id));
        assert!(SessionId::parse(SessionId::generate().as_str()).is_some());
    }

    #[test]
    fn ids_of_the_wrong_form_are_refused() {
        for bad in [
            "",
            "app_",
            "app_short",
            "ses_AAAAAAAAAAAAAAAAAAAA",
            "app_AAAAAAAAAAAAAAAAAAA!",
        ] {
            assert_eq!(AppId::parse(bad), None, "{bad}");
        }
        assert_eq!(SessionId::parse("app_AAAAAAAAAAAAAAAAAAAA"), None);
    }

    #[test]
    fn secrets_never_print() {
        let key = AppKey::generate();
        let printed = format!("{key:?}");
        assert!(!printed.contains(&key.expose()[3..]), "{printed}");
        assert_eq!(printed, "ak_[REDACTED]");
    }

    #[test]
    fn a_secret_hashes_to_its_sha256() {
        let tok = SignupToken::parse("tok_0123456789abcdefghijABCDEFGHIJkl").expect("well-formed");
        assert_eq!(
            tok.hash(),
            SecretHash::of("tok_0123456789abcdefghijABCDEFGHIJkl")
        );
        assert_eq!(tok.hash().as_str().len(), 64);
        assert!(SignupToken::parse("tok_short").is_none());
        assert!(AppKey::parse(tok.expose()).is_none());
    }
}
