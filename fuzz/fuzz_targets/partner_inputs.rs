//! What partners and owners send: URLs, metadata, cursors, ids.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = pipes_core::session::RedirectUrl::parse(s, &[]);
    let _ = pipes_core::events::EndpointUrl::parse(s, false);
    let _ = pipes_core::usecases::numbers::decode_cursor(s);
    let _ = pipes_core::events::is_event_id(s);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(s) {
        let _ = pipes_core::session::Metadata::parse(v);
    }
});
