//! Health history: one row per status change.

use super::*;

pub(super) fn insert_history(
    tx: &rusqlite::Transaction<'_>,
    n: &Number,
    at: DateTime<Utc>,
    event: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO health_history (app_id, phone_number_id, at, event) VALUES (?1, ?2, ?3, ?4)",
        params![
            n.app_id.as_str(),
            n.phone_number_id.as_str(),
            millis(at),
            event
        ],
    )
    .map_err(db_err)?;
    Ok(())
}
