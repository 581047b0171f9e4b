//! The one trait a role implements, and how the node serves it.
//!
//! A role names its config section, its admin commands and the requests it answers
//! ([`Role`]); the node speaks only those request protocols inbound (a request on
//! another is refused by libp2p at negotiation, so a request sent to the wrong role
//! fails at once instead of being dropped), and hands the role a [`RoleEvent`] that
//! can carry nothing else: a role's `handle` matches every case, with no catch-all.
//!
//! [`run`] opens a node for a role and serves it; [`Node::shutdown`] (on SIGTERM)
//! stops taking new work, lets the requests in hand finish (bounded), ends the role's
//! loops and flushes.

use std::future::Future;
use std::sync::Arc;

use libp2p::PeerId;
use printmesh_protocol::messages::{OrderEvent, Role as RoleKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::NodeConfig;
use crate::net::{self, NodeEvent, PeerInfo, Serves};
use crate::node::{start_serving, AdminRequest, AdminResponse, Node, NodeError, RoleCommand};

/// A role: what it is, what it is configured with, what an operator may ask of it,
/// which requests it answers, and how it handles what reaches it.
pub trait Role: Send + Sync + Sized + 'static {
    /// The role this is (its certificates, its hello).
    const KIND: RoleKind;
    /// Its own section of the config file (`[lab]`, `[kiosk]`, …).
    type Config: Send + 'static;
    /// Its admin commands (`printmesh <role> … <command>`).
    type Command: RoleCommand;
    /// The requests it answers, one variant per protocol ([`crate::requests!`]).
    type Request: Requests;

    /// Opens the role's state on a started node.
    fn open(node: Node, config: Self::Config) -> Result<Arc<Self>, NodeError>;

    /// Starts the role's own loops (printers, retries, timers); each ends once
    /// `stopping` fires.
    fn start(self: &Arc<Self>, stopping: Stopping);

    /// Handles one event; several run at once.
    fn handle(self: Arc<Self>, event: RoleEvent<Self>) -> impl Future<Output = ()> + Send;

    /// Whether the node keeps a gossiped event at all (a kiosk keeps only its own
    /// store's orders' events).
    fn keeps(&self, _event: &OrderEvent) -> bool {
        true
    }
}

/// The requests a role answers: an enum with one variant per protocol, made by
/// [`crate::requests!`].
pub trait Requests: Send + Sized + 'static {
    /// Their protocol ids: the only ones the role's node answers (sync aside).
    const PROTOCOLS: &'static [&'static str];

    /// The request, if it is one of these.
    fn from_event(event: NodeEvent) -> Option<Self>;
}

/// Declares a role's request enum: `requests! { pub enum LabRequest { Print(PrintProto),
/// Settle(SettleProto) } }`. Each variant is named as the protocol's [`NodeEvent`]
/// variant and carries its [`net::Inbound`].
#[macro_export]
macro_rules! requests {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident($proto:ty)),* $(,)? }) => {
        $(#[$meta])*
        $vis enum $name {
            $($variant($crate::net::Inbound<$proto>),)*
        }

        impl $crate::role::Requests for $name {
            const PROTOCOLS: &'static [&'static str] =
                &[$(<$proto as $crate::net::WireProtocol>::SPEC.id),*];

            fn from_event(event: $crate::net::NodeEvent) -> ::std::option::Option<Self> {
                match event {
                    $($crate::net::NodeEvent::$variant(i) => Some($name::$variant(i)),)*
                    _ => None,
                }
            }
        }
    };
}

/// What reaches a role.
pub enum RoleEvent<R: Role> {
    /// A peer of the network introduced itself.
    PeerReady(PeerInfo),
    /// The last connection to a peer closed.
    PeerGone(PeerId),
    /// A request of one of the role's protocols.
    Request(R::Request),
    /// An order event new to this node (recorded before the role hears of it).
    Event(OrderEvent),
    /// An operator's command, and where its answer goes.
    Admin(R::Command, oneshot::Sender<AdminResponse>),
}

/// Fires once, when the node stops: the role's loops end on it.
#[derive(Clone, Debug)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// A pair: the trigger and the signal it fires.
    pub fn new() -> (watch::Sender<bool>, Stopping) {
        let (tx, rx) = watch::channel(false);
        (tx, Stopping(rx))
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the node stops (at once if it has stopped already).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// Opens a node for role `R` (it answers `R`'s protocols only), opens and starts the
/// role, and serves it until the node stops.
pub async fn run<R: Role>(
    config: impl Into<NodeConfig>,
    section: R::Config,
) -> Result<(Node, Arc<R>), NodeError> {
    let config: NodeConfig = config.into();
    if config.role != R::KIND {
        return Err(NodeError::Role(format!(
            "the config is for {}, not {}",
            config.role.with_article(),
            R::KIND.with_article()
        )));
    }
    let serves = Serves::Only(R::Request::PROTOCOLS.to_vec());
    let (node, rx) = start_serving(config, serves).await?;
    let role = R::open(node.clone(), section)?;
    role.start(node.stopping());
    tokio::spawn(serve(node.clone(), role.clone(), rx));
    Ok((node, role))
}

/// Delivers events to the role, each in its own task, at most
/// [`crate::node::MAX_CONCURRENT_HANDLERS`] at once, until the node stops. Incoming
/// order events (gossiped or synced) are recorded with their frames first; one this
/// node has already (the same origin, order and number: a replay) goes no further.
/// Revocations are the node's, whatever its role.
pub async fn serve<R: Role>(node: Node, role: Arc<R>, mut rx: mpsc::Receiver<NodeEvent>) {
    let mut stopping = node.stopping();
    loop {
        let event = tokio::select! {
            // A stopping node takes nothing more, whatever is queued.
            biased;
            _ = stopping.wait() => break,
            event = rx.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let Ok(permit) = node.handlers.clone().acquire_owned().await else {
            not_taken(event);
            break;
        };
        if stopping.is_set() {
            // Stopped while waiting for a free handler: not started.
            not_taken(event);
            break;
        }
        let Some(event) = role_event(&node, role.as_ref(), event) else {
            continue;
        };
        let role = role.clone();
        tokio::spawn(async move {
            role.handle(event).await;
            drop(permit);
        });
    }
    // What is still queued is not taken; a synced event says so, so its syncer reads
    // that page again after the restart instead of moving past it.
    rx.close();
    while let Ok(event) = rx.try_recv() {
        not_taken(event);
    }
}

/// An event the stopping node does not take. A request's peer sees its request fail
/// (and retries, under the same idempotency key); a synced event is reported not
/// recorded; a gossiped one comes again by sync.
fn not_taken(event: NodeEvent) {
    if let NodeEvent::Incoming(net::IncomingEvent {
        done: Some(done), ..
    }) = event
    {
        let _ = done.send(net::Recorded::Failed);
    }
}

/// What a node event is to the role, if anything.
fn role_event<R: Role>(node: &Node, role: &R, event: NodeEvent) -> Option<RoleEvent<R>> {
    match event {
        NodeEvent::PeerReady(info) => Some(RoleEvent::PeerReady(info)),
        NodeEvent::PeerGone(peer) => Some(RoleEvent::PeerGone(peer)),
        NodeEvent::Incoming(incoming) => take_incoming(node, role, incoming).map(RoleEvent::Event),
        NodeEvent::Event(event) => Some(RoleEvent::Event(event)),
        NodeEvent::Admin(admin) => match admin.request() {
            AdminRequest::Revoke { .. } => {
                let (request, reply) = admin.into_parts();
                if let AdminRequest::Revoke { revocation } = request {
                    let client = node.client.clone();
                    tokio::spawn(async move {
                        let _ =
                            reply.send(AdminResponse::from_result(client.revoke(revocation).await));
                    });
                }
                None
            }
            AdminRequest::Role { .. } => admin
                .command::<R::Command>()
                .map(|(command, reply)| RoleEvent::Admin(command, reply)),
        },
        other => match R::Request::from_event(other) {
            Some(request) => Some(RoleEvent::Request(request)),
            // The node does not speak other protocols inbound, and the swarm loop
            // answers sync itself: nothing else can come. Dropping it fails the
            // peer's request rather than leaving it waiting.
            None => {
                tracing::warn!(role = %R::KIND, "a request the role does not answer: dropped");
                None
            }
        },
    }
}

/// Records an incoming event (if the role keeps it); the event, if it is new here.
fn take_incoming<R: Role>(
    node: &Node,
    role: &R,
    incoming: net::IncomingEvent,
) -> Option<OrderEvent> {
    use net::Recorded;
    let net::IncomingEvent { event, frame, done } = incoming;
    let recorded = if !role.keeps(&event) {
        Recorded::Known
    } else {
        match node.events.record_signed(&event, &frame) {
            Ok(true) => Recorded::New,
            // The swarm loop ignores (and logs) gossip the log has; this is a second
            // copy of one that was in flight when the first landed, or a synced one
            // that gossip brought meanwhile.
            Ok(false) => {
                tracing::debug!(order_id = %event.order_id, seq = event.seq, "an event this node has already: ignored");
                Recorded::Known
            }
            Err(err) => {
                // The role still hears of it; the syncer reads that page again.
                tracing::error!("cannot record event: {err}");
                Recorded::Failed
            }
        }
    };
    // A synced event that could not be stored is brought again by the syncer; only
    // then does the role hear of it (once). A gossiped one may never come again.
    let synced = done.is_some();
    if let Some(done) = done {
        let _ = done.send(recorded);
    }
    match recorded {
        Recorded::New => Some(event),
        Recorded::Failed if !synced => Some(event),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::Duration;

    use printmesh_protocol::messages::{ShipRequest, ShipResponse};
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::net::ShipProto;

    /// A role of the test's own: answers shipments slowly, ticks in a loop.
    struct Slow {
        ticks: AtomicU32,
        started: AtomicBool,
        finished: AtomicBool,
    }

    #[derive(Debug, Serialize, Deserialize)]
    enum SlowCommand {}

    impl RoleCommand for SlowCommand {
        const ROLE: RoleKind = RoleKind::Courier;
    }

    crate::requests! {
        enum SlowRequest {
            Ship(ShipProto),
        }
    }

    impl Role for Slow {
        const KIND: RoleKind = RoleKind::Courier;
        type Config = ();
        type Command = SlowCommand;
        type Request = SlowRequest;

        fn open(_: Node, _: ()) -> Result<Arc<Slow>, NodeError> {
            Ok(Arc::new(Slow {
                ticks: AtomicU32::new(0),
                started: AtomicBool::new(false),
                finished: AtomicBool::new(false),
            }))
        }

        fn start(self: &Arc<Self>, mut stopping: Stopping) {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {
                            me.ticks.fetch_add(1, Ordering::SeqCst);
                        }
                        _ = stopping.wait() => break,
                    }
                }
            });
        }

        async fn handle(self: Arc<Self>, event: RoleEvent<Self>) {
            match event {
                RoleEvent::Request(SlowRequest::Ship(inbound)) => {
                    self.started.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    self.finished.store(true, Ordering::SeqCst);
                    inbound.respond(ShipResponse::Refused {
                        shipment: "s".into(),
                        reason: "slow".into(),
                    });
                }
                RoleEvent::Admin(command, _) => match command {},
                RoleEvent::Event(_) | RoleEvent::PeerReady(_) | RoleEvent::PeerGone(_) => {}
            }
        }
    }

    fn manifest() -> ShipRequest {
        ShipRequest::Manifest {
            shipment: "s".into(),
            lab: "l".into(),
            parcels: vec![],
        }
    }

    #[tokio::test]
    async fn a_synced_event_queued_when_the_node_stops_is_reported_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig::bare(
            RoleKind::Courier,
            "slow",
            "net",
            dir.path().join("n"),
            vec![],
        );
        let (node, _) = crate::node::start(config).await.unwrap();
        let slow = Slow::open(node.clone(), ()).unwrap();
        let (tx, rx) = mpsc::channel(4);
        let key = libp2p::identity::Keypair::generate_ed25519();
        let event = OrderEvent {
            order_id: printmesh_protocol::OrderId::from_parts(1, 1),
            origin: key.public().to_peer_id().to_bytes(),
            seq: 1,
            at_ms: 0,
            kind: printmesh_protocol::messages::EventKind::Delivered,
        };
        let (done, outcome) = oneshot::channel();
        let incoming = net::IncomingEvent {
            event,
            frame: vec![],
            done: Some(done),
        };
        tx.send(NodeEvent::Incoming(incoming)).await.unwrap();
        node.shutdown().await;
        serve(node.clone(), slow, rx).await;
        // Not "known": the syncer must not move its cursor past it.
        assert_eq!(outcome.await, Ok(net::Recorded::Failed));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopping_node_finishes_the_request_in_hand_ends_its_loops_and_takes_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let network = format!("net-{}", rand::random::<u32>());
        let config = |role, name: &str, peers| {
            NodeConfig::bare(role, name, &network, dir.path().join(name), peers)
        };
        let (node, slow) = run::<Slow>(config(RoleKind::Courier, "slow", vec![]), ())
            .await
            .unwrap();
        let addr = node.addresses().await[0].to_string();
        let (lab, mut rx) = crate::node::start(config(RoleKind::Lab, "lab", vec![addr]))
            .await
            .unwrap();
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        lab.client
            .wait_for_role(RoleKind::Courier, Duration::from_secs(10))
            .await
            .unwrap();
        let client = lab.client.clone();
        let peer = node.peer_id();
        let asked =
            tokio::spawn(async move { client.request::<ShipProto>(peer, manifest()).await });
        while !slow.started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            slow.ticks.load(Ordering::SeqCst) > 0,
            "the role's loop runs"
        );

        node.shutdown().await;
        assert!(
            slow.finished.load(Ordering::SeqCst),
            "the request in hand was finished"
        );
        let answer = asked.await.unwrap();
        assert!(
            matches!(answer, Ok(ShipResponse::Refused { .. })),
            "{answer:?}"
        );
        let ticks = slow.ticks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            slow.ticks.load(Ordering::SeqCst),
            ticks,
            "the role's loop ended"
        );
        let after = lab.client.request::<ShipProto>(peer, manifest()).await;
        assert!(
            after.is_err(),
            "a stopped node takes no more work: {after:?}"
        );
        lab.shutdown().await;
    }
}
