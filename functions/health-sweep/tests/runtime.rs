//! The real `health-sweep` bootstrap against a local Lambda Runtime API with the
//! scheduled-event sample: it checks the due numbers and prints EMF metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use pipes_core::HealthStatus;
use pipes_tests::runtime_api::{LambdaHarness, Outcome};
use pipes_tests::{Backend, TestApp};

const BINARY: &str = env!("CARGO_BIN_EXE_health-sweep");
const EVENT: &str = include_str!("../../../events/health-sweep/scheduled.json");

#[tokio::test]
async fn the_bootstrap_sweeps_due_numbers_and_emits_metrics() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let seeded = t.seed_due_numbers(5, 1, 1).await; // five WABAs
    t.sandbox.revoke(seeded[0].phone_number_id.as_str());

    let mut env = t.function_env().await;
    env.push(("SWEEP_CONCURRENCY", "4".into()));
    env.push(("SWEEP_MAX_INLINE", "1000".into()));
    let mut lambda = LambdaHarness::start().await;
    lambda
        .spawn_as("HealthSweepFunction", Path::new(BINARY), &env)
        .await;
    let outcome = lambda.invoke(serde_json::from_str(EVENT).unwrap()).await;
    let Outcome::Response { body, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(body["checked"], 5, "{body}");
    assert_eq!(body["transitions"], 1);
    lambda.assert_least_privilege();
    let stdout = lambda.stop();
    let emf: serde_json::Value = stdout
        .lines()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.get("_aws").is_some())
        })
        .unwrap_or_else(|| panic!("no EMF line in {stdout}"));
    assert_eq!(
        (
            emf["Checked"].as_u64(),
            emf["BecameDown"].as_u64(),
            emf["CheckedHealthy"].as_u64()
        ),
        (Some(5), Some(1), Some(4))
    );
    let down = t
        .store
        .number(&seeded[0].app_id, &seeded[0].phone_number_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(down.health.status, HealthStatus::Down);
    let n = t
        .store
        .number(&seeded[1].app_id, &seeded[1].phone_number_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.health.status, HealthStatus::Healthy);
}
