//! Implementations of the domain's ports: DynamoDB for AWS, SQLite for the embedded
//! local store, and the start-up configuration helpers the hosts share.

mod codec;
pub mod config;
pub mod dynamo;
pub mod embedded;

pub use dynamo::DynamoStore;
pub use embedded::EmbeddedStore;
