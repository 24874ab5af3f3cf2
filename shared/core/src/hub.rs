//! The composition root: every part of the hub, built once per process from its ports
//! (the store, the queue, the operator key, the connector factory). Each entry point
//! takes what it runs: `scim-api` the directory, `webhook-ingest` the inbound engine,
//! `queue-deliver` the deliverer, `scheduled-sync` the [`Schedule`], `admin-api` and
//! `provisync serve` all of it. Building is cheap (handles and `Arc`s, no I/O), so a
//! Lambda cold start pays nothing for the parts it does not use.

use std::sync::Arc;

use provisync_scim::{ResourceKind, SchemaRegistry};

use crate::connector::ConnectorFactory;
use crate::connector::http::HttpFactory;
use crate::crypto::SecretBox;
use crate::directory::{Directory, Stored};
use crate::event::{ChangeEvent, ChangeOp, EventSink, Origin};
use crate::queue::Queue;
use crate::source::Sources;
use crate::store::Store;
use crate::sync::audit::Audit;
use crate::sync::deliver::Deliverer;
use crate::sync::inbound::Inbound;
use crate::sync::link::Links;
use crate::sync::ondemand::{DirectoryOnDemand, MakeSyncMessage, OnDemand};
use crate::sync::pace::Pacer;
use crate::sync::pull::{InboundSink, Puller};
use crate::sync::reconcile::Reconciler;
use crate::sync::runs::Runs;
use crate::sync::schedule::Schedule;
use crate::target::Targets;

/// What a hub is built from.
pub struct HubParts {
    pub store: Arc<dyn Store>,
    /// Where change events go (SQS on AWS, the store-backed queue locally).
    pub queue: Arc<dyn Queue>,
    pub schemas: SchemaRegistry,
    /// The operator key: seals targets' and sources' secrets and passwords in events.
    pub secrets: SecretBox,
    /// Which connectors this process links ([`crate::connector::no_connectors`] for the
    /// functions that deliver nothing).
    pub connectors: ConnectorFactory,
    /// The outbound HTTP client this process links, for the pull of sources and their
    /// connection tests (`provisync_connectors::http::http_port`;
    /// [`crate::connector::http::no_http`] for the functions that call nothing out).
    pub http: HttpFactory,
}

/// The hub, wired. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub secrets: Arc<SecretBox>,
    /// The directory; its writes send their change events through the outbox to `queue`
    /// (passwords sealed with `secrets`).
    pub directory: Directory,
    pub targets: Targets,
    pub sources: Sources,
    pub audit: Audit,
    pub links: Links,
    pub connectors: ConnectorFactory,
    pub http: HttpFactory,
    /// Changes from sources (webhooks and pulls) into the directory.
    pub inbound: Arc<Inbound>,
    /// Consumes the queue: change events to the targets.
    pub deliverer: Arc<Deliverer>,
    pub reconciler: Reconciler,
    pub puller: Puller,
    /// `POST /admin/sync`: one user to one target now.
    pub on_demand: Arc<dyn OnDemand>,
    /// Reconciles and on-demand syncs, and the outcomes of what they queued.
    pub runs: Runs,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("store", &self.store.backend())
            .field("queue", &self.queue.backend())
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(parts: HubParts) -> Hub {
        let HubParts {
            store,
            queue,
            schemas,
            secrets,
            connectors,
            http,
        } = parts;
        let secrets = Arc::new(secrets);
        let store_for_runs = store.clone();
        let sealer = secrets.clone();
        let directory = Directory::new(store.clone(), schemas.clone())
            .with_events(EventSink {
                queue: queue.clone(),
                seal: Some(Arc::new(move |p: &str| Some(sealer.seal(p)))),
            })
            .with_cursor_key(&secrets);
        let targets = Targets::new(store.clone(), secrets.clone());
        let sources = Sources::new(store.clone(), secrets.clone());
        let audit = Audit::new(store.clone());
        let links = Links::new(store.clone());
        let inbound = Arc::new(Inbound::new(
            directory.clone(),
            audit.clone(),
            targets.clone(),
        ));
        let on_demand: Arc<dyn OnDemand> = Arc::new(DirectoryOnDemand::new(
            directory.clone(),
            queue.clone(),
            on_demand_message(),
        ));
        // One pace per target in this process: delivery and reconcile take their calls'
        // slots from it, so together they keep the target's caps, holds and learned rate.
        let pacer = Arc::new(Pacer::new(store.clone()));
        let reconciler = Reconciler::new(
            directory.clone(),
            targets.clone(),
            audit.clone(),
            queue.clone(),
            connectors,
            pacer.clone(),
        );
        let puller = Puller::new(
            store.clone(),
            sources.clone(),
            Arc::new(InboundSink::new(inbound.clone())),
            http,
        )
        .with_audit(audit.clone());
        let deliverer = Arc::new(
            Deliverer::new(
                targets.clone(),
                links.clone(),
                audit.clone(),
                schemas,
                Some(secrets.clone()),
                connectors,
                pacer,
            )
            .with_queue(queue.clone()),
        );
        Hub {
            store,
            queue,
            secrets,
            directory,
            targets,
            sources,
            audit,
            links,
            connectors,
            http,
            inbound,
            deliverer,
            reconciler,
            puller,
            on_demand,
            runs: Runs::new(store_for_runs),
        }
    }

    /// The scheduled cycle of this hub (pull, reconcile, outbox, dead letters).
    pub fn schedule(&self) -> Schedule {
        Schedule {
            directory: self.directory.clone(),
            store: self.store.clone(),
            queue: self.queue.clone(),
            reconciler: self.reconciler.clone(),
            puller: self.puller.clone(),
            grace: None,
        }
    }
}

/// On-demand sync: a change event for one target, carrying the user as it is now, in the
/// sync's run.
fn on_demand_message() -> MakeSyncMessage {
    Arc::new(|target: &str, run: &str, user: &Stored| {
        let mut e = ChangeEvent::new(
            ResourceKind::User,
            user.id(),
            ChangeOp::Update,
            Origin::OnDemand,
        );
        e.resource = Some(user.resource.clone());
        e.version = user.version;
        e.only_targets = vec![target.to_string()];
        e.run = Some(run.to_string());
        e.to_message().ok()
    })
}
