//! Meta's webhooks, as received: the signature check, the delivery envelope split into
//! changes (each with a content-derived id, so a redelivered change is processed once),
//! and the pure decision of what each change means for the platform.
//!
//! Payload shapes follow Meta's documented samples (`tests/fixtures/meta/webhooks/`,
//! sources in its README): `entry[].id` is *not* reliably the WABA (for `PARTNER_*`
//! events it is the partner's business portfolio), so `waba_info.waba_id` wins when
//! present; `entry[].time` is missing on `messages` deliveries and a string on some pages.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::number::{HealthReason, HealthStatus, PhoneNumberId, WabaId};

/// The largest delivery accepted (Meta documents payloads of up to 3 MB).
pub const MAX_DELIVERY_BYTES: usize = 3 * 1024 * 1024;

/// Whether `header` (`X-Hub-Signature-256: sha256=<hex>`) is the HMAC-SHA256 of `body`
/// under the Meta app secret. Constant-time in the comparison.
pub fn signature_valid(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `sha256=<hex>` for `body` (what Meta sends; the sandbox signs with it).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(crate::events::hmac_sha256(secret, &[body]))
    )
}

/// Why a delivery could not be read (it is still acknowledged when signed: Meta would
/// only send it again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("not a delivery: {0}")]
    Shape(&'static str),
}

/// One change of a delivery, stored and processed on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundChange {
    /// `chg_` + SHA-256 of the object, entry id, time, field and value: the same change
    /// delivered twice has the same id.
    pub id: String,
    pub object: String,
    pub entry_id: String,
    /// `entry[].time` (Unix seconds) when Meta sent one.
    pub entry_time: Option<i64>,
    pub field: String,
    pub value: Value,
    pub received_at: DateTime<Utc>,
}

impl InboundChange {
    /// When Meta says the change happened (else when we received it).
    pub fn happened_at(&self) -> DateTime<Utc> {
        self.entry_time
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .unwrap_or(self.received_at)
    }
}

/// Splits a delivery into its changes.
pub fn parse_delivery(
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Vec<InboundChange>, DeliveryError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| DeliveryError::NotJson(e.to_string()))?;
    let object = root
        .get("object")
        .and_then(Value::as_str)
        .ok_or(DeliveryError::Shape("no object"))?
        .to_owned();
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or(DeliveryError::Shape("no entry list"))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry_id = match entry.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(DeliveryError::Shape("an entry without an id")),
        };
        let entry_time = match entry.get("time") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let changes = entry
            .get("changes")
            .and_then(Value::as_array)
            .ok_or(DeliveryError::Shape("an entry without changes"))?;
        for change in changes {
            let field = change
                .get("field")
                .and_then(Value::as_str)
                .ok_or(DeliveryError::Shape("a change without a field"))?
                .to_owned();
            let value = change.get("value").cloned().unwrap_or(Value::Null);
            let mut h = Sha256::new();
            for part in [
                object.as_str(),
                entry_id.as_str(),
                &entry_time.map(|t| t.to_string()).unwrap_or_default(),
                field.as_str(),
                &value.to_string(),
            ] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
            out.push(InboundChange {
                id: format!("chg_{}", &hex::encode(h.finalize())[..40]),
                object: object.clone(),
                entry_id: entry_id.clone(),
                entry_time,
                field,
                value,
                received_at,
            });
        }
    }
    Ok(out)
}

/// Which numbers a change is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every live number of the WABA.
    Waba(WabaId),
    /// The WABA's number with this display phone number (Meta names it by digits).
    WabaPhone { waba: WabaId, display: String },
    /// One number, by Meta's id.
    Phone(PhoneNumberId),
}

/// What a change asks of the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A business finished Embedded Signup for this WABA (`PARTNER_ADDED`): a signup of
    /// ours should be completing; if none does, the browser's callback was lost.
    PartnerAdded { waba: WabaId },
    /// Set the numbers' health now (the same versioned write and history as a check).
    SetHealth {
        target: Target,
        status: HealthStatus,
        reason: HealthReason,
        message: String,
    },
    /// Something may have got better: check the numbers now.
    CheckNow { target: Target },
    /// A change of a number (messages, statuses, ...) or of a WABA (templates, ...):
    /// forwarded to the owning App untouched.
    Forward { target: Target },
    /// Known and of no consequence to the platform (kept with the change).
    Nothing { why: String },
}

fn waba(s: &str) -> Option<WabaId> {
    WabaId::parse(s)
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Decides what `change` means. `our_app_id`: our Meta app's id (an uninstall names the
/// app it is about). `None` when the change names nothing we could act on (unknown
/// shape): it is kept for the operator.
pub fn classify(change: &InboundChange, our_app_id: &str) -> Option<Action> {
    if change.object != "whatsapp_business_account" {
        return None;
    }
    let v = &change.value;
    let entry_waba = waba(&change.entry_id);
    let info_waba = text(v, &["waba_info", "waba_id"]).and_then(waba);
    match change.field.as_str() {
        "account_update" => {
            let event = text(v, &["event"])?;
            account_update(event, v, info_waba, entry_waba, our_app_id)
        }
        "phone_number_quality_update" => {
            let target = Target::WabaPhone {
                waba: entry_waba?,
                display: text(v, &["display_phone_number"])?.to_owned(),
            };
            let event = text(v, &["event"]).unwrap_or_default();
            Some(match event {
                "FLAGGED" => Action::SetHealth {
                    target,
                    status: HealthStatus::Degraded,
                    reason: HealthReason::QualityLow,
                    message:
                        "Meta flagged the number's quality: its messaging limit may be lowered"
                            .into(),
                },
                "DOWNGRADE" => Action::SetHealth {
                    target,
                    status: HealthStatus::Degraded,
                    reason: HealthReason::MetaLimited,
                    message: format!(
                        "Meta lowered the number's messaging limit to {}",
                        text(v, &["current_limit"])
                            .or(text(v, &["max_daily_conversations_per_business"]))
                            .unwrap_or("a lower tier")
                    ),
                },
                // UNFLAGGED, UPGRADE, THROUGHPUT_UPGRADE, ONBOARDING, ...: look again.
                _ => Action::CheckNow { target },
            })
        }
        "account_review_update" => {
            let target = Target::Waba(entry_waba?);
            Some(match text(v, &["decision"])? {
                "REJECTED" => Action::SetHealth {
                    target,
                    status: HealthStatus::Down,
                    reason: HealthReason::AccountRejected,
                    message: "Meta rejected the WhatsApp Business Account in review".into(),
                },
                "APPROVED" => Action::CheckNow { target },
                other => Action::Nothing {
                    why: format!("account review {other}"),
                },
            })
        }
        _ => {
            let target = match text(v, &["metadata", "phone_number_id"]) {
                Some(p) => Target::Phone(PhoneNumberId::parse(p)?),
                None => Target::Waba(entry_waba?),
            };
            Some(Action::Forward { target })
        }
    }
}

fn account_update(
    event: &str,
    v: &Value,
    info_waba: Option<WabaId>,
    entry_waba: Option<WabaId>,
    our_app_id: &str,
) -> Option<Action> {
    let removed = |target: Target, message: String| Action::SetHealth {
        target,
        status: HealthStatus::Down,
        reason: HealthReason::AccessRemoved,
        message,
    };
    Some(match event {
        "PARTNER_ADDED" => Action::PartnerAdded { waba: info_waba? },
        "PARTNER_REMOVED" => match (info_waba, text(v, &["phone_number"])) {
            (Some(w), _) => {
                let why = match text(v, &["disconnection_info", "reason"]) {
                    Some(r) => format!(" ({r})"),
                    None => String::new(),
                };
                removed(
                    Target::Waba(w),
                    format!(
                        "the business removed our access to the WhatsApp Business Account{why}"
                    ),
                )
            }
            (None, Some(phone)) => removed(
                Target::WabaPhone {
                    waba: entry_waba?,
                    display: phone.to_owned(),
                },
                "the business disconnected the number from the WhatsApp Business app".into(),
            ),
            (None, None) => removed(
                Target::Waba(entry_waba?),
                "the business removed our access to the WhatsApp Business Account".into(),
            ),
        },
        "PARTNER_APP_UNINSTALLED" => match (info_waba, text(v, &["waba_info", "partner_app_id"])) {
            (Some(w), Some(app)) if app == our_app_id => removed(
                Target::Waba(w),
                "the business uninstalled our app from the WhatsApp Business Account".into(),
            ),
            _ => Action::Nothing {
                why: "another app was uninstalled, or no WABA named".into(),
            },
        },
        "ACCOUNT_DELETED" => removed(
            Target::Waba(info_waba.or(entry_waba)?),
            "the WhatsApp Business Account was deleted".into(),
        ),
        "ACCOUNT_OFFBOARDED" => removed(
            Target::Waba(info_waba.or(entry_waba)?),
            "the number was offboarded from the Cloud API (device change or re-registration)"
                .into(),
        ),
        "ACCOUNT_RECONNECTED" => Action::CheckNow {
            target: Target::Waba(info_waba.or(entry_waba)?),
        },
        "DISABLED_UPDATE" => {
            let target = Target::Waba(info_waba.or(entry_waba)?);
            let date = text(v, &["ban_info", "waba_ban_date"]).unwrap_or("an unstated date");
            match text(v, &["ban_info", "waba_ban_state"]).unwrap_or_default() {
                "DISABLE" => Action::SetHealth {
                    target,
                    status: HealthStatus::Down,
                    reason: HealthReason::MetaBlocked,
                    message: format!("Meta disabled the WhatsApp Business Account ({date})"),
                },
                "SCHEDULE_FOR_DISABLE" => Action::SetHealth {
                    target,
                    status: HealthStatus::Degraded,
                    reason: HealthReason::AccountRestricted,
                    message: format!(
                        "Meta scheduled the WhatsApp Business Account to be disabled on {date}"
                    ),
                },
                _ => Action::CheckNow { target },
            }
        }
        "ACCOUNT_VIOLATION" => Action::SetHealth {
            target: Target::Waba(info_waba.or(entry_waba)?),
            status: HealthStatus::Degraded,
            reason: HealthReason::AccountRestricted,
            message: format!(
                "Meta found a policy violation ({})",
                text(v, &["violation_info", "violation_type"]).unwrap_or("unstated")
            ),
        },
        "ACCOUNT_RESTRICTION" => {
            let kinds: Vec<&str> = v
                .get("restriction_info")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(|r| r.get("restriction_type").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            Action::SetHealth {
                target: Target::Waba(info_waba.or(entry_waba)?),
                status: HealthStatus::Degraded,
                reason: HealthReason::AccountRestricted,
                message: format!("Meta restricted the account: {}", kinds.join(", ")),
            }
        }
        other => Action::Nothing {
            why: format!("account_update {other}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(field: &str, entry_id: &str, value: Value) -> InboundChange {
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"id": entry_id, "time": 1_700_000_000, "changes": [{"field": field, "value": value}]}
        ]});
        parse_delivery(body.to_string().as_bytes(), Utc::now())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn signatures() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let good = sign(b"secret", body);
        assert!(signature_valid(b"secret", body, Some(&good)));
        assert!(!signature_valid(b"other", body, Some(&good)));
        assert!(!signature_valid(b"secret", b"{}", Some(&good)));
        assert!(!signature_valid(b"secret", body, None));
        assert!(!signature_valid(b"secret", body, Some("sha256=zz")));
        assert!(!signature_valid(b"secret", body, Some(&good[7..])));
        assert!(!signature_valid(b"secret", body, Some("sha1=00")));
    }

    #[test]
    fn the_same_change_has_the_same_id_and_others_differ() {
        let a = change("messages", "1", json!({"x": 1}));
        let b = change("messages", "1", json!({"x": 1}));
        let c = change("messages", "1", json!({"x": 2}));
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert!(a.id.starts_with("chg_") && a.id.len() == 44);
    }

    #[test]
    fn malformed_deliveries() {
        for bad in [
            &b"not json"[..],
            br#"{"entry": []}"#,
            br#"{"object": "x"}"#,
            br#"{"object": "x", "entry": [{"changes": []}]}"#,
            br#"{"object": "x", "entry": [{"id": "1"}]}"#,
            br#"{"object": "x", "entry": [{"id": "1", "changes": [{"value": {}}]}]}"#,
        ] {
            assert!(parse_delivery(bad, Utc::now()).is_err());
        }
    }

    #[test]
    fn classification() {
        let w = |s: &str| WabaId::parse(s).unwrap();
        let added = change(
            "account_update",
            "35602282435505",
            json!({"event": "PARTNER_ADDED", "waba_info": {"waba_id": "495709166956424", "owner_business_id": "1"}}),
        );
        assert_eq!(
            classify(&added, "9"),
            Some(Action::PartnerAdded {
                waba: w("495709166956424")
            })
        );
        let restricted = change(
            "account_update",
            "102290129340398",
            json!({"event": "ACCOUNT_RESTRICTION", "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": 1}]}),
        );
        assert!(matches!(
            classify(&restricted, "9"),
            Some(Action::SetHealth { status: HealthStatus::Degraded, reason: HealthReason::AccountRestricted, ref message, .. }) if message.contains("RESTRICTED_BIZ_INITIATED_MESSAGING")
        ));
        let uninstalled_other = change(
            "account_update",
            "1",
            json!({"event": "PARTNER_APP_UNINSTALLED", "waba_info": {"waba_id": "5", "partner_app_id": "8"}}),
        );
        assert!(matches!(
            classify(&uninstalled_other, "9"),
            Some(Action::Nothing { .. })
        ));
        assert!(matches!(
            classify(&uninstalled_other, "8"),
            Some(Action::SetHealth {
                status: HealthStatus::Down,
                reason: HealthReason::AccessRemoved,
                ..
            })
        ));
        let template = change(
            "message_template_status_update",
            "77",
            json!({"event": "APPROVED"}),
        );
        assert_eq!(
            classify(&template, "9"),
            Some(Action::Forward {
                target: Target::Waba(w("77"))
            })
        );
        let unknown_event = change("account_update", "77", json!({"event": "NEW_THING"}));
        assert!(matches!(
            classify(&unknown_event, "9"),
            Some(Action::Nothing { .. })
        ));
        let no_event = change("account_update", "77", json!({}));
        assert_eq!(classify(&no_event, "9"), None);
        let not_waba = change(
            "account_update",
            "business-x",
            json!({"event": "ACCOUNT_DELETED"}),
        );
        assert_eq!(classify(&not_waba, "9"), None);
    }
}
