//! Implementations of the domain's ports: DynamoDB, KMS and SQS for AWS; SQLite, a
//! master-key file and a durable job table for local use; the Graph API client; and
//! the start-up configuration helpers the hosts share.

mod codec;
pub mod config;
pub mod dynamo;
pub mod embedded;
pub mod event_sender;
pub mod graph;
pub mod kms;
pub mod lazy_client;
pub mod local_key;
pub mod local_worker;
pub mod metrics;
pub mod root;
pub mod sqs;
pub mod sqs_worker;

pub use dynamo::DynamoStore;
pub use embedded::EmbeddedStore;
