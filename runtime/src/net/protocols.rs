//! The protocol table. Each request-response protocol is declared once, in
//! `printmesh_protocol::wire` (its id, caps and the roles that may send it), and named
//! once here, in [`request_protocols!`]'s list: that line gives it its behaviour in the
//! swarm, its map of pending requests, its [`NodeEvent`] variant and its dispatch.

// The `BehaviourEvent` that `#[derive(NetworkBehaviour)]` makes carries gossipsub's
// large events beside small ones; boxing them is the derive's business, not ours.
#![allow(clippy::large_enum_variant)]

use super::*;

/// A request-response protocol: what the protocol crate says of it, and its message
/// types.
pub trait WireProtocol: Send + 'static {
    const SPEC: Spec;
    type Request: Serialize + DeserializeOwned + Send + Sync + Debug + 'static;
    type Response: Serialize + DeserializeOwned + Send + Sync + Debug + 'static;
}

/// A protocol the event loop serves for roles: where its behaviour and its pending
/// map live, and how an inbound request reaches the role.
pub trait Served: WireProtocol + Sized {
    fn behaviour(b: &mut Behaviour) -> &mut Rr<Self>;
    fn pending(p: &mut PendingRequests) -> &mut Pending<Self::Response>;
    fn inbound(i: Inbound<Self>) -> NodeEvent;
}

pub(super) type Pending<R> =
    HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<R, NetError>>)>;

/// The hello, which every connection starts with; not a [`Served`] protocol (the loop
/// answers it itself, before any role hears of the peer).
#[derive(Debug, Clone, Copy)]
pub struct HelloProto;
impl WireProtocol for HelloProto {
    const SPEC: Spec = wire::hello::SPEC;
    type Request = Hello;
    type Response = Hello;
}

/// Which request protocols a node answers: those of its role, and sync (every node
/// answers what its peers missed). A request on another is refused by libp2p at
/// negotiation, so a request sent to the wrong role fails at once and never reaches
/// the role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serves {
    /// Every protocol (a node whose events a test handles itself).
    All,
    /// These protocol ids, and sync.
    Only(Vec<&'static str>),
}

impl Serves {
    pub fn inbound(&self, id: &str) -> bool {
        match self {
            Serves::All => true,
            Serves::Only(ids) => id == wire::sync::ID || ids.contains(&id),
        }
    }
}

macro_rules! request_protocols {
    ($(
        $(#[$doc:meta])*
        $field:ident: $name:ident($spec:expr, $req:ty, $resp:ty) => $variant:ident
    ),* $(,)?) => {
        $(
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl WireProtocol for $name {
                const SPEC: Spec = $spec;
                type Request = $req;
                type Response = $resp;
            }
            impl Served for $name {
                fn behaviour(b: &mut Behaviour) -> &mut Rr<Self> {
                    &mut b.$field
                }
                fn pending(p: &mut PendingRequests) -> &mut Pending<$resp> {
                    &mut p.$field
                }
                fn inbound(i: Inbound<Self>) -> NodeEvent {
                    NodeEvent::$variant(i)
                }
            }
        )*

        #[derive(NetworkBehaviour)]
        pub struct Behaviour {
            /// Connection caps: per peer, in total, and half-open incoming ones.
            pub(super) limits: libp2p::connection_limits::Behaviour,
            /// No new connections while the process uses most of the machine's memory.
            pub(super) memory: libp2p::memory_connection_limits::Behaviour,
            /// Peers cut off for flooding.
            pub(super) blocked:
                libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
            pub(super) identify: identify::Behaviour,
            pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
            pub(super) gossipsub: gossipsub::Behaviour,
            pub(super) hello: Rr<HelloProto>,
            $(pub(super) $field: Rr<$name>,)*
            pub(super) stream: libp2p_stream::Behaviour,
        }

        /// The behaviours that are not a request protocol of the table.
        pub(super) struct Fixed {
            pub limits: libp2p::connection_limits::Behaviour,
            pub memory: libp2p::memory_connection_limits::Behaviour,
            pub blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
            pub identify: identify::Behaviour,
            pub mdns: Toggle<mdns::tokio::Behaviour>,
            pub gossipsub: gossipsub::Behaviour,
            /// The request protocols answered here ([`Serves`]).
            pub serves: Serves,
        }

        impl Behaviour {
            pub(super) fn new(f: Fixed) -> Behaviour {
                Behaviour {
                    limits: f.limits,
                    memory: f.memory,
                    blocked: f.blocked,
                    identify: f.identify,
                    mdns: f.mdns,
                    gossipsub: f.gossipsub,
                    hello: rr(true),
                    $($field: rr(f.serves.inbound($spec.id)),)*
                    stream: libp2p_stream::Behaviour::new(),
                }
            }
        }

        /// Outstanding outbound requests, one map per protocol.
        #[derive(Default)]
        pub struct PendingRequests {
            $($field: Pending<$resp>,)*
            /// Answers handed to the swarm and not yet written out (a stopping node
            /// waits for them), by protocol and request.
            pub(super) answering:
                HashSet<(&'static str, request_response::InboundRequestId)>,
        }

        /// What the swarm loop tells the role.
        pub enum NodeEvent {
            /// A peer of our network introduced itself.
            PeerReady(PeerInfo),
            /// The last connection to a peer closed.
            PeerGone(PeerId),
            $($(#[$doc])* $variant(Inbound<$name>),)*
            /// An order event whose signature and origin checked out, as it reached the
            /// node (gossiped, or sent by a peer it asked what it missed):
            /// `role::serve` records it with its frame and hands it to the role as
            /// [`NodeEvent::Event`].
            Incoming(IncomingEvent),
            /// An order event new to this node, for the role.
            Event(OrderEvent),
            /// An operator's command through the node's admin socket.
            Admin(crate::node::AdminInbound),
        }

        impl EventLoop {
            /// Hands a request protocol's event to its handler; any other comes back.
            pub(super) fn dispatch(&mut self, event: BehaviourEvent) -> Option<BehaviourEvent> {
                match event {
                    $(BehaviourEvent::$variant(e) => self.on_request_response::<$name>(e),)*
                    other => return Some(other),
                }
                None
            }
        }
    };
}

// The table: one line per request-response protocol (the hello aside).
request_protocols! {
    /// Kiosk → intermediary: an order.
    order: OrderProto(wire::order::SPEC, OrderRequest, OrderResponse) => Order,
    /// Intermediary → acquirer: authorise, capture, void.
    auth: AuthProto(wire::auth::SPEC, AuthRequest, AuthResponse) => Auth,
    /// Intermediary → lab: a print job.
    print: PrintProto(wire::print::SPEC, PrintRequest, PrintResponse) => Print,
    /// Settlement between acquirers, intermediaries and labs.
    settle: SettleProto(wire::settle::SPEC, SettleRequest, SettleResponse) => Settle,
    /// Lab → courier: a shipment.
    ship: ShipProto(wire::ship::SPEC, ShipRequest, ShipResponse) => Ship,
    /// A peer asks what it missed: answered by the swarm loop from the event log,
    /// never handed to a role.
    sync: SyncProto(wire::sync::SPEC, SyncRequest, SyncResponse) => Sync,
    /// Kiosk or intermediary → content company or intermediary: catalogues.
    content: ContentProto(wire::content::SPEC, ContentRequest, ContentResponse) => Content,
    /// Kiosk → intermediary: downloads bought, written, or given up.
    download: DownloadProto(wire::download::SPEC, DownloadRequest, DownloadResponse) => Download,
}

fn invalid_data(e: codec::CodecError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Reads one frame: the header is checked before the payload is allocated.
pub async fn read_frame<T, R>(io: &mut R, max: usize) -> io::Result<T>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; FRAME_HEADER_LEN];
    io.read_exact(&mut header).await?;
    let len = codec::parse_header(header, max).map_err(invalid_data)?;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    codec::decode_payload(&payload).map_err(invalid_data)
}

/// Writes one frame.
pub async fn write_frame<T, W>(io: &mut W, value: &T, max: usize) -> io::Result<()>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let frame = codec::encode_frame(value, max).map_err(invalid_data)?;
    io.write_all(&frame).await?;
    io.flush().await
}

/// The request-response codec: our bincode frames with the protocol's caps.
pub struct FrameCodec<P>(PhantomData<fn() -> P>);

impl<P> Default for FrameCodec<P> {
    fn default() -> Self {
        FrameCodec(PhantomData)
    }
}

impl<P> Clone for FrameCodec<P> {
    fn clone(&self) -> Self {
        FrameCodec(PhantomData)
    }
}

impl<P: WireProtocol> request_response::Codec for FrameCodec<P> {
    type Protocol = StreamProtocol;
    type Request = P::Request;
    type Response = P::Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<P::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, P::SPEC.max_request_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<P::Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, P::SPEC.max_response_bytes).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: P::Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, P::SPEC.max_request_bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: P::Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, P::SPEC.max_response_bytes).await
    }
}

type Rr<P> = request_response::Behaviour<FrameCodec<P>>;

/// A protocol's behaviour: answered here (`inbound`), or only sent (a peer's request
/// on it is refused at negotiation: the node does not speak it inbound).
fn rr<P: WireProtocol>(inbound: bool) -> Rr<P> {
    let support = if inbound {
        ProtocolSupport::Full
    } else {
        ProtocolSupport::Outbound
    };
    request_response::Behaviour::new(
        [(StreamProtocol::new(P::SPEC.id), support)],
        request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
    )
}
