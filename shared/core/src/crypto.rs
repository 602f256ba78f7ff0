//! Envelope encryption of the secrets we keep (business tokens, registration PINs):
//! a data key from a `KeyWrapper` (KMS, or a local master key) encrypts with AES-256-GCM;
//! we store the ciphertext, nonce, wrapped data key and key id in one versioned format.
//! The AAD binds each ciphertext to its record (purpose, appId, phoneNumberId), so a
//! ciphertext moved to another record fails to decrypt. Plaintext data keys are cached
//! for a bounded time and count, so reading many records costs few unwrap calls.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

use crate::ids::AppId;
use crate::number::PhoneNumberId;

pub type KeyBytes = SecretBox<[u8; 32]>;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the key service is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the key service refused: {0}")]
    Refused(String),
    #[error("malformed sealed secret")]
    Malformed,
    /// Wrong record, wrong key, or tampered bytes: AES-GCM authentication failed.
    #[error("the sealed secret does not open for this record")]
    Tampered,
}

/// The context a data key is wrapped under (KMS encryption context): it must be given
/// again, unchanged, to unwrap the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyContext(BTreeMap<String, String>);

impl KeyContext {
    /// Business tokens and registration PINs.
    pub const PURPOSE: &'static str = "pipes-secret";
    /// Webhook endpoints' signing secrets: a purpose of their own, so a function that
    /// signs partner events or redirects may open these and nothing else.
    pub const ENDPOINT_PURPOSE: &'static str = "pipes-endpoint-secret";
    /// Responses kept for idempotent retries (they may carry a signup token or a
    /// secret shown once).
    pub const RESPONSE_PURPOSE: &'static str = "pipes-idempotent-response";

    /// Data keys are per App: one App's keys never open another App's secrets.
    pub fn for_app(app_id: &AppId) -> Self {
        Self::for_app_purpose(app_id, Self::PURPOSE)
    }

    pub fn for_app_purpose(app_id: &AppId, purpose: &str) -> Self {
        Self(BTreeMap::from([
            ("purpose".to_owned(), purpose.to_owned()),
            ("appId".to_owned(), app_id.to_string()),
        ]))
    }

    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// A canonical byte form (for the local wrapper's AAD).
    pub fn canonical(&self) -> Vec<u8> {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes()
    }
}

/// A fresh data key: its plaintext (kept in memory only) and its wrapped form.
pub struct DataKey {
    pub plaintext: KeyBytes,
    pub wrapped: Vec<u8>,
    pub key_id: String,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The port to the key service that wraps and unwraps data keys.
#[async_trait]
pub trait KeyWrapper: Send + Sync + fmt::Debug {
    async fn generate_data_key(&self, context: &KeyContext) -> Result<DataKey, CryptoError>;
    async fn unwrap_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &KeyContext,
    ) -> Result<KeyBytes, CryptoError>;
}

/// What a sealed secret is, bound into its AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPurpose {
    BusinessToken,
    RegistrationPin,
}

/// The record a secret belongs to.
#[derive(Debug, Clone, Copy)]
pub struct SecretBinding<'a> {
    pub purpose: SecretPurpose,
    pub app_id: &'a AppId,
    pub phone_number_id: &'a PhoneNumberId,
}

impl SecretBinding<'_> {
    fn aad(&self) -> Vec<u8> {
        let purpose = match self.purpose {
            SecretPurpose::BusinessToken => "business-token",
            SecretPurpose::RegistrationPin => "registration-pin",
        };
        format!(
            "pipes.bot/v1|{purpose}|{}|{}",
            self.app_id, self.phone_number_id
        )
        .into_bytes()
    }
}

/// The associated data of a response kept for an idempotent retry.
fn response_aad(app_id: &AppId) -> Vec<u8> {
    format!("pipes.bot/v1|idempotent-response|{app_id}").into_bytes()
}

/// The associated data of an App-wide secret (distinct from every number's).
fn app_secret_aad(app_id: &AppId) -> Vec<u8> {
    format!("pipes.bot/v1|endpoint-secret|{app_id}").into_bytes()
}

/// A sealed secret in the one versioned format both wrappers share:
/// `v1.<key id>.<wrapped data key>.<nonce>.<ciphertext+tag>`, each part base64url.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    key_id: String,
    wrapped_key: Vec<u8>,
    nonce: [u8; 12],
    ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed(v1, {} bytes)", self.ciphertext.len())
    }
}

impl serde::Serialize for Sealed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> serde::Deserialize<'de> for Sealed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::decode(&s).map_err(serde::de::Error::custom)
    }
}

impl Sealed {
    pub fn encode(&self) -> String {
        format!(
            "v1.{}.{}.{}.{}",
            B64.encode(self.key_id.as_bytes()),
            B64.encode(&self.wrapped_key),
            B64.encode(self.nonce),
            B64.encode(&self.ciphertext)
        )
    }

    pub fn decode(s: &str) -> Result<Self, CryptoError> {
        let parts: Vec<&str> = s.split('.').collect();
        let [version, key_id, wrapped, nonce, ct] = parts[..] else {
            return Err(CryptoError::Malformed);
        };
        if version != "v1" {
            return Err(CryptoError::Malformed);
        }
        let b = |p: &str| B64.decode(p).map_err(|_| CryptoError::Malformed);
        Ok(Self {
            key_id: String::from_utf8(b(key_id)?).map_err(|_| CryptoError::Malformed)?,
            wrapped_key: b(wrapped)?,
            nonce: b(nonce)?.try_into().map_err(|_| CryptoError::Malformed)?,
            ciphertext: b(ct)?,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// Limits of the plaintext data-key cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// Unwrapped keys kept for decryption.
    pub max_keys: usize,
    /// How long a plaintext key stays in memory.
    pub ttl: Duration,
    /// Encryptions with one data key before a new one is generated.
    pub max_uses: u32,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_keys: 1024,
            ttl: Duration::from_secs(15 * 60),
            max_uses: 10_000,
        }
    }
}

struct CachedKey {
    key: KeyBytes,
    at: Instant,
}

struct EncryptKey {
    key: KeyBytes,
    wrapped: Vec<u8>,
    key_id: String,
    at: Instant,
    uses: u32,
}

#[derive(Default)]
struct Cache {
    /// For decryption, by SHA-256 of the wrapped key.
    open: HashMap<[u8; 32], CachedKey>,
    /// The current data key per App and purpose, for encryption.
    seal: HashMap<(AppId, &'static str), EncryptKey>,
}

/// One lock per data key being fetched, by the wrapped key's fingerprint.
type FetchLocks = HashMap<[u8; 32], Arc<futures_util::lock::Mutex<()>>>;

/// Seals and opens secrets with envelope encryption and the data-key cache.
#[derive(Clone)]
pub struct Envelope {
    wrapper: Arc<dyn KeyWrapper>,
    limits: CacheLimits,
    cache: Arc<Mutex<Cache>>,
    /// Held while a missing data key is fetched, one lock per data key (by the wrapped
    /// key's fingerprint): concurrent readers of records under one data key make one
    /// key-service call, not one each, and a slow fetch for one App holds up no other.
    fetching: Arc<Mutex<FetchLocks>>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("wrapper", &self.wrapper)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn cipher(key: &KeyBytes) -> Aes256Gcm {
    Aes256Gcm::new(key.expose_secret().into())
}

fn copy_key(key: &KeyBytes) -> KeyBytes {
    SecretBox::new(Box::new(*key.expose_secret()))
}

fn random_nonce() -> [u8; 12] {
    let mut nonce = [0u8; 12];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut nonce).expect("the OS CSPRNG is unavailable");
    nonce
}

impl Envelope {
    pub fn new(wrapper: Arc<dyn KeyWrapper>) -> Self {
        Self::with_limits(wrapper, CacheLimits::default())
    }

    pub fn with_limits(wrapper: Arc<dyn KeyWrapper>, limits: CacheLimits) -> Self {
        Self {
            wrapper,
            limits,
            cache: Arc::default(),
            fetching: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encrypts `plaintext` for the record `binding` names.
    pub async fn seal(
        &self,
        binding: SecretBinding<'_>,
        plaintext: &[u8],
    ) -> Result<Sealed, CryptoError> {
        self.seal_aad(
            binding.app_id,
            KeyContext::PURPOSE,
            &binding.aad(),
            plaintext,
        )
        .await
    }

    /// Encrypts an App-wide secret (its webhook endpoint's signing secret).
    pub async fn seal_app_secret(
        &self,
        app_id: &AppId,
        plaintext: &[u8],
    ) -> Result<Sealed, CryptoError> {
        self.seal_aad(
            app_id,
            KeyContext::ENDPOINT_PURPOSE,
            &app_secret_aad(app_id),
            plaintext,
        )
        .await
    }

    /// Opens an App-wide secret sealed by [`Envelope::seal_app_secret`].
    pub async fn open_app_secret(
        &self,
        app_id: &AppId,
        sealed: &Sealed,
    ) -> Result<SecretString, CryptoError> {
        let bytes = self
            .open_aad(
                app_id,
                KeyContext::ENDPOINT_PURPOSE,
                &app_secret_aad(app_id),
                sealed,
            )
            .await?;
        let s = std::str::from_utf8(bytes.expose_secret()).map_err(|_| CryptoError::Malformed)?;
        Ok(SecretString::from(s.to_owned()))
    }

    /// Seals a response kept for an idempotent retry.
    pub async fn seal_response(&self, app_id: &AppId, body: &[u8]) -> Result<Sealed, CryptoError> {
        self.seal_aad(
            app_id,
            KeyContext::RESPONSE_PURPOSE,
            &response_aad(app_id),
            body,
        )
        .await
    }

    /// Opens a response sealed by [`Envelope::seal_response`].
    pub async fn open_response(
        &self,
        app_id: &AppId,
        sealed: &Sealed,
    ) -> Result<SecretBox<Vec<u8>>, CryptoError> {
        self.open_aad(
            app_id,
            KeyContext::RESPONSE_PURPOSE,
            &response_aad(app_id),
            sealed,
        )
        .await
    }

    async fn seal_aad(
        &self,
        app_id: &AppId,
        purpose: &'static str,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Sealed, CryptoError> {
        let binding_app = app_id;
        let slot = (app_id.clone(), purpose);
        let current = {
            let mut cache = self.lock();
            // Idle Apps' data keys leave memory once they are too old to use.
            let ttl = self.limits.ttl;
            cache.seal.retain(|_, k| k.at.elapsed() < ttl);
            let fresh = cache
                .seal
                .get_mut(&slot)
                .filter(|k| k.at.elapsed() < self.limits.ttl && k.uses < self.limits.max_uses);
            fresh.map(|k| {
                k.uses += 1;
                (copy_key(&k.key), k.wrapped.clone(), k.key_id.clone())
            })
        };
        let (key, wrapped, key_id) = match current {
            Some(c) => c,
            None => {
                let dk = self
                    .wrapper
                    .generate_data_key(&KeyContext::for_app_purpose(binding_app, purpose))
                    .await?;
                let entry = EncryptKey {
                    key: copy_key(&dk.plaintext),
                    wrapped: dk.wrapped.clone(),
                    key_id: dk.key_id.clone(),
                    at: Instant::now(),
                    uses: 1,
                };
                self.lock().seal.insert(slot, entry);
                (dk.plaintext, dk.wrapped, dk.key_id)
            }
        };
        let nonce = random_nonce();
        let ciphertext = cipher(&key)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Malformed)?;
        Ok(Sealed {
            key_id,
            wrapped_key: wrapped,
            nonce,
            ciphertext,
        })
    }

    /// Decrypts a sealed secret of the record `binding` names.
    pub async fn open(
        &self,
        binding: SecretBinding<'_>,
        sealed: &Sealed,
    ) -> Result<SecretBox<Vec<u8>>, CryptoError> {
        self.open_aad(binding.app_id, KeyContext::PURPOSE, &binding.aad(), sealed)
            .await
    }

    async fn open_aad(
        &self,
        app_id: &AppId,
        purpose: &str,
        aad: &[u8],
        sealed: &Sealed,
    ) -> Result<SecretBox<Vec<u8>>, CryptoError> {
        let fingerprint: [u8; 32] = Sha256::digest(&sealed.wrapped_key).into();
        let cached = || {
            let cache = self.lock();
            cache
                .open
                .get(&fingerprint)
                .filter(|c| c.at.elapsed() < self.limits.ttl)
                .map(|c| copy_key(&c.key))
        };
        let mut key = cached();
        let _fetching = match key {
            Some(_) => None,
            None => {
                let lock = {
                    let mut locks = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
                    // Locks nobody waits on any more are dropped as new ones come.
                    locks.retain(|_, l| Arc::strong_count(l) > 1);
                    Arc::clone(locks.entry(fingerprint).or_default())
                };
                let guard = lock.lock_owned().await;
                key = cached();
                Some(guard)
            }
        };
        let key = match key {
            Some(k) => k,
            None => {
                let key = self
                    .wrapper
                    .unwrap_data_key(
                        &sealed.key_id,
                        &sealed.wrapped_key,
                        &KeyContext::for_app_purpose(app_id, purpose),
                    )
                    .await?;
                self.remember(fingerprint, copy_key(&key));
                key
            }
        };
        let plaintext = cipher(&key)
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Tampered)?;
        Ok(SecretBox::new(Box::new(plaintext)))
    }

    /// Opens a sealed UTF-8 secret (a token or PIN).
    pub async fn open_string(
        &self,
        binding: SecretBinding<'_>,
        sealed: &Sealed,
    ) -> Result<SecretString, CryptoError> {
        let bytes = self.open(binding, sealed).await?;
        let s = std::str::from_utf8(bytes.expose_secret()).map_err(|_| CryptoError::Malformed)?;
        Ok(SecretString::from(s.to_owned()))
    }

    fn remember(&self, fingerprint: [u8; 32], key: KeyBytes) {
        let mut cache = self.lock();
        let ttl = self.limits.ttl;
        cache.open.retain(|_, c| c.at.elapsed() < ttl);
        if cache.open.len() >= self.limits.max_keys {
            let oldest = cache.open.iter().min_by_key(|(_, c)| c.at).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                cache.open.remove(&oldest);
            }
        }
        cache.open.insert(
            fingerprint,
            CachedKey {
                key,
                at: Instant::now(),
            },
        );
    }
}

/// A `KeyWrapper` holding a 256-bit master key itself (local mode): data keys are
/// wrapped with AES-256-GCM under the master key, with the key context as AAD.
pub struct MasterKeyWrapper {
    master: KeyBytes,
    key_id: String,
}

impl fmt::Debug for MasterKeyWrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKeyWrapper({})", self.key_id)
    }
}

impl MasterKeyWrapper {
    pub fn new(master: [u8; 32]) -> Self {
        let key_id = format!("local:{}", &hex::encode(Sha256::digest(master))[..16]);
        Self {
            master: SecretBox::new(Box::new(master)),
            key_id,
        }
    }

    pub fn generate_master() -> [u8; 32] {
        let mut k = [0u8; 32];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut k).expect("the OS CSPRNG is unavailable");
        k
    }
}

#[async_trait]
impl KeyWrapper for MasterKeyWrapper {
    async fn generate_data_key(&self, context: &KeyContext) -> Result<DataKey, CryptoError> {
        let plaintext = Self::generate_master();
        let nonce = random_nonce();
        let aad = context.canonical();
        let ct = cipher(&self.master)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Malformed)?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend(ct);
        Ok(DataKey {
            plaintext: SecretBox::new(Box::new(plaintext)),
            wrapped,
            key_id: self.key_id.clone(),
        })
    }

    async fn unwrap_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &KeyContext,
    ) -> Result<KeyBytes, CryptoError> {
        if key_id != self.key_id {
            return Err(CryptoError::Refused(
                "sealed under another master key".into(),
            ));
        }
        if wrapped.len() < 12 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = wrapped.split_at(12);
        let aad = context.canonical();
        let plain = cipher(&self.master)
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| CryptoError::Tampered)?;
        let key: [u8; 32] = plain.try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(SecretBox::new(Box::new(key)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Counting(MasterKeyWrapper, AtomicUsize, AtomicUsize);

    #[async_trait]
    impl KeyWrapper for Counting {
        async fn generate_data_key(&self, c: &KeyContext) -> Result<DataKey, CryptoError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.generate_data_key(c).await
        }
        async fn unwrap_data_key(
            &self,
            id: &str,
            w: &[u8],
            c: &KeyContext,
        ) -> Result<KeyBytes, CryptoError> {
            self.2.fetch_add(1, Ordering::SeqCst);
            self.0.unwrap_data_key(id, w, c).await
        }
    }

    fn ids() -> (AppId, PhoneNumberId, PhoneNumberId) {
        (
            AppId::generate(),
            PhoneNumberId::parse("1098765432101").unwrap(),
            PhoneNumberId::parse("1098765432102").unwrap(),
        )
    }

    fn token(app: &AppId, phone: &PhoneNumberId) -> SecretBinding<'static> {
        let app: &'static AppId = Box::leak(Box::new(app.clone()));
        let phone: &'static PhoneNumberId = Box::leak(Box::new(phone.clone()));
        SecretBinding {
            purpose: SecretPurpose::BusinessToken,
            app_id: app,
            phone_number_id: phone,
        }
    }

    fn envelope() -> Envelope {
        Envelope::new(Arc::new(MasterKeyWrapper::new(
            MasterKeyWrapper::generate_master(),
        )))
    }

    #[tokio::test]
    async fn round_trip_through_the_encoded_form() {
        let env = envelope();
        let (app, phone, _) = ids();
        let sealed = env.seal(token(&app, &phone), b"EAAG-secret").await.unwrap();
        let decoded = Sealed::decode(&sealed.encode()).unwrap();
        assert_eq!(decoded, sealed);
        let opened = env
            .open_string(token(&app, &phone), &decoded)
            .await
            .unwrap();
        assert_eq!(opened.expose_secret(), "EAAG-secret");
        assert!(!format!("{sealed:?}").contains("EAAG"));
    }

    #[tokio::test]
    async fn a_ciphertext_moved_to_another_record_or_purpose_does_not_open() {
        let env = envelope();
        let (app, phone, other_phone) = ids();
        let sealed = env.seal(token(&app, &phone), b"EAAG-secret").await.unwrap();
        let moved = env.open(token(&app, &other_phone), &sealed).await;
        assert!(matches!(moved, Err(CryptoError::Tampered)));
        let mut as_pin = token(&app, &phone);
        as_pin.purpose = SecretPurpose::RegistrationPin;
        assert!(matches!(
            env.open(as_pin, &sealed).await,
            Err(CryptoError::Tampered)
        ));
        // Another App's context cannot even unwrap the data key.
        let other_app = AppId::generate();
        assert!(env.open(token(&other_app, &phone), &sealed).await.is_err());
    }

    #[tokio::test]
    async fn flipped_bits_anywhere_fail() {
        let (app, phone, _) = ids();
        let wrapper = Arc::new(MasterKeyWrapper::new(MasterKeyWrapper::generate_master()));
        let sealed = Envelope::new(wrapper.clone())
            .seal(token(&app, &phone), b"EAAG-secret")
            .await
            .unwrap();
        for part in 0..3 {
            let mut bad = sealed.clone();
            match part {
                0 => bad.ciphertext[0] ^= 1,
                1 => bad.nonce[3] ^= 0x80,
                _ => {
                    let last = bad.wrapped_key.len() - 1;
                    bad.wrapped_key[last] ^= 1;
                }
            }
            // A fresh envelope, so the wrapped key really is unwrapped again.
            let res = Envelope::new(wrapper.clone())
                .open(token(&app, &phone), &bad)
                .await;
            assert!(
                matches!(res, Err(CryptoError::Tampered)),
                "part {part}: {res:?}"
            );
        }
        for garbage in ["", "v2.a.b.c.d", "v1.a.b", "v1.!!.b.c.d"] {
            assert!(Sealed::decode(garbage).is_err(), "{garbage}");
        }
    }

    #[tokio::test]
    async fn data_keys_are_reused_within_limits() {
        let counting = Arc::new(Counting(
            MasterKeyWrapper::new(MasterKeyWrapper::generate_master()),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        ));
        let env = Envelope::with_limits(
            counting.clone(),
            CacheLimits {
                max_keys: 8,
                ttl: Duration::from_secs(60),
                max_uses: 10,
            },
        );
        let app = AppId::generate();
        let mut sealed = Vec::new();
        for i in 0..25u64 {
            let phone = PhoneNumberId::parse(&(1000 + i).to_string()).unwrap();
            sealed.push((
                phone.clone(),
                env.seal(token(&app, &phone), b"t").await.unwrap(),
            ));
        }
        assert_eq!(
            counting.1.load(Ordering::SeqCst),
            3,
            "25 seals at 10 uses per key"
        );
        let fresh = Envelope::new(counting.clone());
        for (phone, s) in &sealed {
            fresh.open(token(&app, phone), s).await.unwrap();
        }
        assert_eq!(
            counting.2.load(Ordering::SeqCst),
            3,
            "one unwrap per data key"
        );
    }
}
