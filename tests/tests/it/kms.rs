//! Envelope encryption with KMS on moto's server: round trip, binding to the record and
//! the App, tampering, and that KMS calls grow with data keys, not with records.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use pipes_core::crypto::{
    CryptoError, DataKey, Envelope, KeyBytes, KeyContext, KeyWrapper, Sealed, SecretBinding,
    SecretPurpose,
};
use pipes_core::{AppId, PhoneNumberId};
use secrecy::ExposeSecret;

/// Counts the calls that reach the wrapped key service.
#[derive(Debug)]
pub struct CountingWrapper<W> {
    pub inner: W,
    pub generated: AtomicUsize,
    pub unwrapped: AtomicUsize,
}

impl<W> CountingWrapper<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            generated: AtomicUsize::new(0),
            unwrapped: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl<W: KeyWrapper> KeyWrapper for CountingWrapper<W> {
    async fn generate_data_key(&self, c: &KeyContext) -> Result<DataKey, CryptoError> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        self.inner.generate_data_key(c).await
    }
    async fn unwrap_data_key(
        &self,
        id: &str,
        w: &[u8],
        c: &KeyContext,
    ) -> Result<KeyBytes, CryptoError> {
        self.unwrapped.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_data_key(id, w, c).await
    }
}

fn binding<'a>(app: &'a AppId, phone: &'a PhoneNumberId) -> SecretBinding<'a> {
    SecretBinding {
        purpose: SecretPurpose::BusinessToken,
        app_id: app,
        phone_number_id: phone,
    }
}

#[tokio::test]
async fn kms_envelopes_round_trip_and_bind_to_their_record() {
    let conf = pipes_tests::emulator().await;
    let kms = Arc::new(pipes_tests::kms_wrapper(&conf).await);
    let env = Envelope::new(kms.clone());
    let (app, phone) = (
        AppId::generate(),
        PhoneNumberId::parse("1000000000001").unwrap(),
    );
    let sealed = env
        .seal(binding(&app, &phone), b"EAAG-token")
        .await
        .unwrap();
    assert!(sealed.key_id().contains("arn:aws:kms") || !sealed.key_id().is_empty());
    let decoded = Sealed::decode(&sealed.encode()).unwrap();
    // A fresh envelope has no cached key, so this really asks KMS.
    let opened = Envelope::new(kms.clone())
        .open(binding(&app, &phone), &decoded)
        .await
        .unwrap();
    assert_eq!(opened.expose_secret().as_slice(), b"EAAG-token");

    let other_phone = PhoneNumberId::parse("1000000000002").unwrap();
    let moved = Envelope::new(kms.clone())
        .open(binding(&app, &other_phone), &decoded)
        .await;
    assert!(matches!(moved, Err(CryptoError::Tampered)), "{moved:?}");

    // Another App's encryption context: KMS itself refuses to unwrap the data key.
    let other_app = AppId::generate();
    let foreign = Envelope::new(kms.clone())
        .open(binding(&other_app, &phone), &decoded)
        .await;
    assert!(foreign.is_err(), "{foreign:?}");

    let mut bytes = decoded.encode().into_bytes();
    let dot = bytes.iter().rposition(|b| *b == b'.').unwrap();
    bytes[dot + 3] = if bytes[dot + 3] == b'A' { b'B' } else { b'A' };
    let flipped = Sealed::decode(std::str::from_utf8(&bytes).unwrap()).unwrap();
    let res = Envelope::new(kms)
        .open(binding(&app, &phone), &flipped)
        .await;
    assert!(matches!(res, Err(CryptoError::Tampered)), "{res:?}");
}

#[tokio::test]
async fn kms_calls_grow_with_data_keys_not_with_records() {
    let conf = pipes_tests::emulator().await;
    let kms = Arc::new(CountingWrapper::new(pipes_tests::kms_wrapper(&conf).await));
    let writer = Envelope::new(kms.clone());
    let apps = [AppId::generate(), AppId::generate()];
    let mut sealed = Vec::new();
    for i in 0..100u64 {
        let app = &apps[(i % 2) as usize];
        let phone = PhoneNumberId::parse(&(2_000_000 + i).to_string()).unwrap();
        let s = writer
            .seal(binding(app, &phone), format!("token-{i}").as_bytes())
            .await
            .unwrap();
        sealed.push((app.clone(), phone, s));
    }
    assert_eq!(
        kms.generated.load(Ordering::SeqCst),
        2,
        "one data key per App"
    );
    let reader = Envelope::new(kms.clone());
    for (i, (app, phone, s)) in sealed.iter().enumerate() {
        let plain = reader.open(binding(app, phone), s).await.unwrap();
        assert_eq!(
            plain.expose_secret().as_slice(),
            format!("token-{i}").as_bytes()
        );
    }
    assert_eq!(
        kms.unwrapped.load(Ordering::SeqCst),
        2,
        "100 records, 2 Decrypt calls"
    );
}
