//! The node's one libp2p swarm loop, behind a `Client` / `EventLoop` split.
//!
//! [`build`] returns a cloneable [`Client`], a bounded receiver of [`NodeEvent`]s for the
//! role, and the [`EventLoop`] that owns the `Swarm`. The client sends [`Command`]s with
//! a oneshot for the answer; the event loop keeps the maps of pending requests. Roles
//! never touch the swarm.
//!
//! Transport: TCP + noise + yamux. Behaviours: identify, mDNS (optional), gossipsub
//! (signed messages, strict validation, explicit max transmit size), one
//! request-response behaviour per protocol with our bincode frame codec and its caps,
//! and libp2p-stream for blobs.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, mdns, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use printmesh_protocol::codec::{self, FRAME_HEADER_LEN};
use printmesh_protocol::membership::Certificate;
use printmesh_protocol::messages::{
    proto, AuthRequest, AuthResponse, Hello, OrderEvent, OrderRequest, OrderResponse, PrintRequest,
    PrintResponse, Role, SettleRequest, SettleResponse, ShipRequest, ShipResponse, SyncRequest,
    SyncResponse,
};
use printmesh_protocol::wire::content::{ContentRequest, ContentResponse};
use printmesh_protocol::wire::download::{DownloadRequest, DownloadResponse};
use printmesh_protocol::wire::{self, Spec};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::events::judge_frame;

/// Capacity of the command and event channels.
pub const CHANNEL_CAPACITY: usize = 256;
/// How long a request may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping node's swarm loop keeps writing out the answers its role gave.
pub const ANSWER_FLUSH: Duration = Duration::from_secs(2);
/// How long the swarm runs on after its last answer went out, so the peer reads it
/// before the connection drops.
pub const ANSWER_GRACE: Duration = Duration::from_millis(250);
/// How often mDNS asks the LAN who is there. The library's default (5 minutes) means
/// two nodes whose first queries cross miss each other for minutes.
pub const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(5);
/// How often the loop redials configured peers that are not connected.
pub const REDIAL_INTERVAL: Duration = Duration::from_secs(2);
/// A connected peer whose hello has not been accepted by then is disconnected.
pub const ADMISSION_DEADLINE: Duration = Duration::from_secs(10);
/// Gossipsub's application score of a peer refused, cut off, or (in an enrolled
/// network) not admitted yet: far below the graylist threshold, so nothing is
/// published or forwarded to it and nothing it sends is taken. Gossipsub keeps a
/// score two minutes after the peer leaves (`retain_score`), so a refused peer that
/// dials again gets nothing either.
const UNADMITTED_SCORE: f64 = -1000.0;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NetError {
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("dial failed: {0}")]
    Dial(String),
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("no {0} is reachable")]
    NoPeer(Role),
    #[error("the node is shutting down")]
    Shutdown,
}

pub mod admission;
mod client;
mod event_loop;
mod protocols;

pub use admission::{
    bounded_entry, Admission, Bucket, Refusal, Verdict, CUT_OFF_FOR, HELLO_FAILURE_WINDOW,
    MAX_FAILED_HELLOS, MAX_STRIKES, STRIKE_WINDOW,
};
use client::SwarmJob;
pub use client::{Client, Command};
pub use event_loop::*;
pub use protocols::*;

/// A request a peer sent us. Answer it with [`Inbound::respond`]; dropping it without
/// answering makes the peer's request fail.
pub struct Inbound<P: WireProtocol> {
    pub peer: PeerId,
    /// The store the peer belongs to (a kiosk's; checked against its certificate in
    /// an enrolled network).
    pub store: Option<printmesh_protocol::StoreId>,
    pub request: P::Request,
    reply: oneshot::Sender<P::Response>,
}

impl<P: WireProtocol> Inbound<P> {
    pub fn respond(self, response: P::Response) {
        let _ = self.reply.send(response);
    }

    /// Splits the request from its answer slot (for handlers that move the request).
    pub fn into_parts(self) -> (PeerId, P::Request, Responder<P>) {
        (self.peer, self.request, Responder(self.reply))
    }
}

/// The answer slot of an [`Inbound`] request.
pub struct Responder<P: WireProtocol>(oneshot::Sender<P::Response>);

impl<P: WireProtocol> Responder<P> {
    pub fn respond(self, response: P::Response) {
        let _ = self.0.send(response);
    }
}

/// An event on its way into the node's log.
pub struct IncomingEvent {
    pub event: OrderEvent,
    /// The signed frame it came as (kept, so it can be passed on to peers that ask).
    pub frame: Vec<u8>,
    /// Told what became of it: the sync task moves its cursor past an event only once
    /// it is recorded (or known, or not kept here).
    pub done: Option<oneshot::Sender<Recorded>>,
}

/// What became of an [`IncomingEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// New here: recorded, and handed to the role.
    New,
    /// The node has it already, or does not keep it (a kiosk: another store's order).
    Known,
    /// It could not be stored (the database failed): it should be brought again.
    Failed,
}

/// A connected peer of our network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer: PeerId,
    pub hello: Hello,
}
