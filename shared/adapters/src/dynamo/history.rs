//! Health history: one item per status change, under the App's history partition.

use super::*;

pub(super) fn history_pk(app: &AppId) -> String {
    format!("HIST#{app}")
}

pub(super) fn history_item(number: &Number, event: &HealthEvent) -> Result<Item, StoreError> {
    Ok(HashMap::from([
        ("pk".into(), s(history_pk(&number.app_id))),
        (
            "sk".into(),
            s(format!(
                "HIST#{}#{:015}#{}",
                number.phone_number_id,
                event.at.timestamp_millis(),
                pipes_core::random::base62(6)
            )),
        ),
        ("event".into(), s(to_json(event)?)),
    ]))
}
