//! CloudWatch Embedded Metric Format: one JSON log line per sweep that CloudWatch turns
//! into metrics (checked, per status, transitions, duration...) with no extra calls.

use pipes_core::usecases::sweep::SweepReport;
use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "PipesBot";

/// The sweep's report as an EMF document.
pub fn sweep_emf(report: &SweepReport, timestamp_ms: i64) -> Value {
    let counts: [(&str, usize); 7] = [
        ("Checked", report.checked),
        ("Transitions", report.transitions),
        ("BecameDown", report.became_down),
        ("Redriven", report.redriven),
        ("ThrottledSkips", report.throttled_skips),
        ("FannedOut", report.fanned_out),
        ("CheckFailures", report.failed),
    ];
    let statuses = ["healthy", "degraded", "down", "pending"];
    let mut metrics = Vec::new();
    let mut doc = Map::new();
    for (name, value) in counts {
        metrics.push(json!({"Name": name, "Unit": "Count"}));
        doc.insert(name.to_owned(), json!(value));
    }
    for status in statuses {
        let name = format!("Checked{}{}", status[..1].to_uppercase(), &status[1..]);
        metrics.push(json!({"Name": name, "Unit": "Count"}));
        doc.insert(
            name,
            json!(report.by_status.get(status).copied().unwrap_or(0)),
        );
    }
    metrics.push(json!({"Name": "DurationMs", "Unit": "Milliseconds"}));
    doc.insert("DurationMs".into(), json!(report.duration_ms as u64));
    doc.insert("StoppedEarly".into(), json!(u8::from(report.stopped_early)));
    metrics.push(json!({"Name": "StoppedEarly", "Unit": "Count"}));
    // Meta refused our app's credentials: an operator must fix the app secret.
    doc.insert(
        "AppCredentialsRejected".into(),
        json!(u8::from(report.app_credentials_rejected)),
    );
    metrics.push(json!({"Name": "AppCredentialsRejected", "Unit": "Count"}));
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": metrics,
            }],
        }),
    );
    doc.insert("Function".into(), json!("health-sweep"));
    Value::Object(doc)
}

/// What the sweep function answers its invocation with.
pub fn sweep_result(report: &SweepReport) -> Value {
    json!({
        "checked": report.checked,
        "transitions": report.transitions,
        "redriven": report.redriven,
        "fannedOut": report.fanned_out,
        "stoppedEarly": report.stopped_early,
        "appCredentialsRejected": report.app_credentials_rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_has_a_value() {
        let mut report = SweepReport {
            checked: 7,
            transitions: 2,
            became_down: 1,
            ..SweepReport::default()
        };
        report.by_status.insert("healthy", 6);
        report.by_status.insert("down", 1);
        let doc = sweep_emf(&report, 1_796_014_800_000);
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert_eq!(declared.len(), 14);
        for m in declared {
            let name = m["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} has no value");
        }
        assert_eq!(doc["Checked"], 7);
        assert_eq!(doc["CheckedHealthy"], 6);
        assert_eq!(doc["CheckedDown"], 1);
        assert_eq!(doc["BecameDown"], 1);
        assert_eq!(doc["AppCredentialsRejected"], 0);
        assert_eq!(doc["Function"], "health-sweep");
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "PipesBot");
    }
}
