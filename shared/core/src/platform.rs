//! The platform's parts, assembled once by the composition root (`pipes_adapters::root`)
//! for every host: each Lambda, `pipes dev`, `pipes sweep` and the test harness. Use
//! cases never take the whole platform: they take the narrow dependency sets below
//! (`SignupDeps`, `WorkerDeps`, `CheckDeps`) or a single port.

use std::sync::Arc;

use crate::clock::Clock;
use crate::crypto::Envelope;
use crate::meta::MetaGraph;
use crate::ports::Store;
use crate::queue::JobQueue;
use crate::usecases::PublicBaseUrl;
use crate::usecases::events::{Emitter, EndpointDeps, EventSender};
use crate::usecases::health::{CheckDeps, HealthPolicy};
use crate::usecases::inbound::ReceiveDeps;
use crate::usecases::setup::WorkerDeps;
use crate::usecases::signup::SignupDeps;

/// What the hosted page needs to start Meta's Embedded Signup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaApp {
    pub app_id: String,
    pub config_id: String,
    /// Graph API version for `FB.init`, e.g. `v25.0`.
    pub graph_version: String,
    /// The sandbox stands in for Meta: the page loads its SDK stand-in and trusts its
    /// own origin.
    pub sandbox: bool,
}

/// Every part a host runs with; cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct Platform {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn JobQueue>,
    /// Partner-event deliveries: a queue of their own, so retries towards a failing
    /// partner endpoint never delay setups, checks or Meta's webhooks.
    pub events_queue: Arc<dyn JobQueue>,
    pub graph: Arc<dyn MetaGraph>,
    /// One envelope for the process's life: warm invocations reuse cached data keys.
    pub envelope: Envelope,
    pub clock: Arc<dyn Clock>,
    pub policy: HealthPolicy,
    /// Base of signup links.
    pub public_base_url: PublicBaseUrl,
    pub meta: MetaApp,
    /// Sends partner events to their endpoints.
    pub sender: Arc<dyn EventSender>,
    /// `META_WEBHOOK_VERIFY_TOKEN`: what Meta's verification handshake must present.
    pub webhook_verify_token: Option<secrecy::SecretString>,
    /// `pipes dev`: partner endpoints may be plain http on localhost.
    pub allow_local_endpoints: bool,
    /// The rate limits besides each App's own.
    pub limits: crate::usecases::limits::Limits,
}

impl Platform {
    /// What CompleteSignup talks to.
    pub fn signup(&self) -> SignupDeps<'_> {
        SignupDeps {
            sessions: &*self.store,
            numbers: &*self.store,
            graph: &*self.graph,
            envelope: &self.envelope,
            queue: &*self.queue,
            clock: &*self.clock,
            events: &*self.store,
            events_queue: &*self.events_queue,
        }
    }

    /// What the setup worker and the sweep talk to.
    pub fn worker(&self) -> WorkerDeps<'_> {
        WorkerDeps {
            store: &*self.store,
            sessions: &*self.store,
            inbox: &*self.store,
            events: &*self.store,
            sender: &*self.sender,
            graph: &*self.graph,
            envelope: &self.envelope,
            queue: &*self.queue,
            events_queue: &*self.events_queue,
            clock: &*self.clock,
            policy: &self.policy,
        }
    }

    /// Stores events and queues their delivery.
    pub fn emitter(&self) -> Emitter<'_> {
        Emitter {
            store: &*self.store,
            queue: &*self.events_queue,
        }
    }

    /// What the endpoint and event-log routes talk to.
    pub fn endpoints(&self) -> EndpointDeps<'_> {
        EndpointDeps {
            store: &*self.store,
            queue: &*self.events_queue,
            envelope: &self.envelope,
            clock: &*self.clock,
            allow_local_http: self.allow_local_endpoints,
        }
    }

    /// What idempotency keys talk to.
    pub fn idempotency(&self) -> crate::usecases::idempotency::IdemDeps<'_> {
        crate::usecases::idempotency::IdemDeps {
            store: &*self.store,
            envelope: &self.envelope,
            clock: &*self.clock,
        }
    }

    /// What receiving Meta's webhooks talks to.
    pub fn receive(&self) -> ReceiveDeps<'_> {
        ReceiveDeps {
            inbox: &*self.store,
            queue: &*self.queue,
            graph: &*self.graph,
            clock: &*self.clock,
        }
    }

    /// What a health check talks to.
    pub fn check(&self) -> CheckDeps<'_> {
        self.worker().check()
    }
}
