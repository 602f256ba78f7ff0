//! Every parser that takes outside input, under property tests: whatever arrives (Meta's
//! webhook deliveries and Graph answers, the partner's bodies, cursors, queue messages,
//! sealed envelopes, URLs), parsing answers Ok or Err and never panics; what parses
//! round-trips. `cargo test -p pipes-core --test parsers`; more cases with
//! `PROPTEST_CASES=100000`. (Meta's Graph answers are fuzzed through the real client in `tests/tests/it/graph_client.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use pipes_core::crypto::Sealed;
use pipes_core::events::{EndpointUrl, is_event_id};
use pipes_core::queue::Job;
use pipes_core::session::{Metadata, RedirectUrl};
use pipes_core::usecases::numbers::{decode_cursor, encode_cursor};
use pipes_core::webhooks::{classify, parse_delivery, signature_valid};
use pipes_core::{PhoneNumberId, WabaId};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[0-9]{1,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("object".to_owned()),
                    Just("entry".to_owned()),
                    Just("id".to_owned()),
                    Just("time".to_owned()),
                    Just("changes".to_owned()),
                    Just("field".to_owned()),
                    Just("value".to_owned()),
                    Just("event".to_owned()),
                    Just("waba_info".to_owned()),
                    Just("waba_id".to_owned()),
                    Just("metadata".to_owned()),
                    Just("phone_number_id".to_owned()),
                    Just("display_phone_number".to_owned()),
                    ".{0,12}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Meta-shaped deliveries with arbitrary parts.
fn delivery() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("whatsapp_business_account".to_owned()), ".{0,10}"],
        prop::collection::vec(
            (
                prop_oneof!["[0-9]{1,16}", ".{0,8}"],
                any::<Option<i64>>(),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("account_update".to_owned()),
                            Just("messages".to_owned()),
                            Just("phone_number_quality_update".to_owned()),
                            Just("account_review_update".to_owned()),
                            ".{0,12}"
                        ],
                        any_json(),
                    ),
                    0..4,
                ),
            ),
            0..4,
        ),
    )
        .prop_map(|(object, entries)| {
            json!({"object": object, "entry": entries.into_iter().map(|(id, time, changes)| json!({
                "id": id, "time": time,
                "changes": changes.into_iter().map(|(f, v)| json!({"field": f, "value": v})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()})
        })
}

proptest! {
    #[test]
    fn meta_deliveries_parse_or_refuse_and_every_change_classifies(
        body in prop_oneof![delivery(), any_json()],
    ) {
        let bytes = body.to_string();
        if let Ok(changes) = parse_delivery(bytes.as_bytes(), Utc::now()) {
            for c in &changes {
                prop_assert!(c.id.starts_with("chg_") && c.id.len() == 44);
                let _ = classify(c, "123");
                let _ = c.happened_at();
            }
        }
    }

    #[test]
    fn raw_bytes_never_panic_the_webhook_parsers(bytes in prop::collection::vec(any::<u8>(), 0..512), sig in ".{0,80}") {
        let _ = parse_delivery(&bytes, Utc::now());
        let _ = signature_valid(b"secret", &bytes, Some(&sig));
    }

    #[test]
    fn queue_messages_parse_or_refuse(body in prop_oneof![any_json().prop_map(|v| v.to_string()), ".{0,200}"]) {
        if let Ok(job) = serde_json::from_str::<Job>(&body) {
            let again: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
            prop_assert_eq!(job, again);
        }
    }

    #[test]
    fn sealed_envelopes_decode_or_refuse(s in prop_oneof![".{0,200}", "v1\\.[A-Za-z0-9_-]{0,20}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,20}\\.[A-Za-z0-9_-]{0,60}"]) {
        if let Ok(sealed) = Sealed::decode(&s) {
            prop_assert_eq!(Sealed::decode(&sealed.encode()).unwrap(), sealed);
        }
    }

    #[test]
    fn cursors_decode_or_refuse_and_round_trip(s in ".{0,80}", id in "[0-9]{1,32}") {
        let _ = decode_cursor(&s);
        let phone = PhoneNumberId::parse(&id).unwrap();
        prop_assert_eq!(decode_cursor(&encode_cursor(&phone)), Some(phone));
    }

    #[test]
    fn partner_inputs_parse_or_refuse(s in ".{0,300}", v in any_json()) {
        let _ = RedirectUrl::parse(&s, &[]);
        let _ = EndpointUrl::parse(&s, true);
        let _ = EndpointUrl::parse(&s, false);
        let _ = Metadata::parse(v);
        let _ = is_event_id(&s);
        let _ = WabaId::parse(&s);
        let _ = PhoneNumberId::parse(&s);
    }
}
