//! Sealed envelopes read back from storage: decoded or refused, and round-tripped.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(sealed) = pipes_core::crypto::Sealed::decode(s)
    {
        assert_eq!(
            pipes_core::crypto::Sealed::decode(&sealed.encode()).ok(),
            Some(sealed)
        );
    }
});
