//! The integration tests, in one binary: the store contract suite on both stores, the
//! partner API over HTTP, the Lambda sample events, and secrets at rest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs `$body(Backend)` as one test per store.
macro_rules! on_both_stores {
    ($($name:ident => $body:ident;)*) => {
        mod embedded {
            $(#[tokio::test]
            async fn $name() {
                super::$body(pipes_tests::Backend::embedded()).await;
            })*
        }
        mod dynamodb {
            $(#[tokio::test]
            async fn $name() {
                super::$body(pipes_tests::Backend::aws().await).await;
            })*
        }
    };
}

mod api;
mod browser;
mod contract;
mod dashboard;
mod events;
mod graph_client;
mod hardening;
mod health;
mod idempotency;
mod kms;
mod lifecycle;
mod limits;
mod meta_scenarios;
mod numbers_api;
mod openapi;
mod partner_events;
mod reliability;
mod round_trips;
mod sandbox;
mod secrets_at_rest;
mod signup;
mod webhooks;
