//! Meta's webhook deliveries: split into changes and classified, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pipes_core::webhooks::signature_valid(b"secret", data, Some("sha256=00"));
    if let Ok(changes) = pipes_core::webhooks::parse_delivery(data, chrono::Utc::now()) {
        for c in &changes {
            let _ = pipes_core::webhooks::classify(c, "123");
        }
    }
});
