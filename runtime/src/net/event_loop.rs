//! The event loop: owns the `Swarm`, the pending requests and the admission state.

use super::*;

/// An address without its trailing `/p2p/<peer id>`, for matching a configured peer
/// address against the address a connection was dialled on.
fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

/// What a node tells the swarm about itself.
pub struct NetConfig {
    pub hello: Hello,
    /// In an enrolled network: what every peer's hello is checked against.
    pub gate: Option<crate::membership::Gate>,
    /// A private network's pre-shared key: peers without it cannot connect at all.
    pub psk: Option<libp2p::pnet::PreSharedKey>,
    /// What each peer may ask of this node.
    pub limits: crate::config::LimitsConfig,
    /// The node's event log: a gossiped event it has already is not taken again.
    pub known_events: Option<std::sync::Arc<crate::events::EventLog>>,
    /// The catalogues the node keeps: a gossiped catalogue is offered to them.
    pub catalogues: Option<std::sync::Arc<crate::catalogues::Catalogues>>,
    pub listen: Vec<Multiaddr>,
    pub peers: Vec<Multiaddr>,
    pub mdns: bool,
    /// The request protocols this node answers.
    pub serves: Serves,
}

/// Owns the swarm; run it with [`EventLoop::run`].
impl EventLoop {
    /// Another way into the role's event queue (the node's admin socket uses it).
    pub fn event_sender(&self) -> mpsc::Sender<NodeEvent> {
        self.events.clone()
    }
}

pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NodeEvent>,
    pending: PendingRequests,
    replies: FuturesUnordered<BoxFuture<'static, Option<SwarmJob>>>,
    hello: Hello,
    gate: Option<crate::membership::Gate>,
    /// Peers refused, and why (each peer and reason is logged once; bounded).
    refused: BoundedSet,
    /// Peers whose hello came and was refused here, and when: the connection this
    /// node then closed is not a hello the peer failed (a node revoked and then
    /// renewed under the same key is not cut off for its old certificate's refusals).
    hello_refused: HashMap<PeerId, Instant>,
    /// Connected peers whose hello is not accepted yet, since when.
    unadmitted: HashMap<PeerId, Instant>,
    /// In an enrolled network, the certificates of the peers admitted (their
    /// signatures checked once; expiry and revocation every tick).
    admitted: HashMap<PeerId, Certificate>,
    /// Budgets, strikes and cut-offs ([`Admission`]: verdicts without IO).
    admission: Admission,
    known_events: Option<std::sync::Arc<crate::events::EventLog>>,
    catalogues: Option<std::sync::Arc<crate::catalogues::Catalogues>>,
    /// Sync answers being read now ([`MAX_SYNC_ANSWERS`]).
    sync_answers: std::sync::Arc<tokio::sync::Semaphore>,
    /// Whether this node was told its own certificate no longer counts.
    own_problem: Option<String>,
    /// Reasons gossiped events were rejected for (each is logged once; bounded).
    rejected: BoundedSet,
    /// Established connections per peer.
    connections: HashMap<PeerId, u32>,
    peers: HashMap<PeerId, PeerInfo>,
    static_peers: Vec<(Multiaddr, Option<PeerId>)>,
    /// Peers mDNS found, until it says they expired; redialled while not connected.
    discovered: HashMap<PeerId, Multiaddr>,
    listen_addrs: Vec<Multiaddr>,
}

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("transport: {0}")]
    Transport(String),
    #[error("behaviour: {0}")]
    Behaviour(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

/// TCP, then (in a private network) the pre-shared key's handshake, then noise and
/// yamux. A peer without the key cannot even start noise.
fn transport(
    key: &Keypair,
    psk: Option<libp2p::pnet::PreSharedKey>,
) -> Result<
    libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>,
    noise::Error,
> {
    use libp2p::core::upgrade::Version;
    use libp2p::Transport as _;
    let noise = noise::Config::new(key)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(match psk {
        Some(psk) => tcp
            .and_then(move |socket, _| libp2p::pnet::PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .boxed(),
        None => tcp
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .boxed(),
    })
}

/// A peer has at most this many connections to a node at once (a flood of dials from
/// one peer cannot crowd out the others).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Connections a node holds in all.
pub const MAX_CONNECTIONS: u32 = 512;
/// Incoming connections still in their handshake at once.
pub const MAX_PENDING_INCOMING: u32 = 64;

/// A set that forgets everything once it holds [`BoundedSet::MAX`] entries, so a
/// flood of distinct reasons cannot grow it without end (the log then repeats one).
#[derive(Default)]
struct BoundedSet(HashSet<String>);

impl BoundedSet {
    const MAX: usize = 1024;

    fn insert(&mut self, s: String) -> bool {
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(s)
    }

    /// Forgets the entries that begin with `prefix`.
    fn forget(&mut self, prefix: &str) {
        self.0.retain(|s| !s.starts_with(prefix));
    }
}

/// A PeerId's text, from its bytes (empty if they are not one).
pub(crate) fn peer_name(bytes: &[u8]) -> String {
    PeerId::from_bytes(bytes)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// Sync answers being read from the log at once; a request past them is answered
/// "busy" at once (the asker tries again later).
const MAX_SYNC_ANSWERS: usize = 4;

/// Builds the swarm and splits it into a client, the role's event receiver and the
/// event loop.
pub fn build(
    keypair: Keypair,
    config: NetConfig,
) -> Result<(Client, mpsc::Receiver<NodeEvent>, EventLoop), BuildError> {
    let mdns_enabled = config.mdns;
    let serves = config.serves.clone();
    let psk = config.psk;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            transport(key, psk).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| BuildError::Transport(e.to_string()))?
        .with_behaviour(|key| {
            // Every event is signed by its origin and checked on receipt
            // (`verify_event`), whoever forwarded it; a gossipsub signature on top would
            // sign and verify each event twice. Messages are anonymous at the gossip
            // layer and identified by the hash of the signed event.
            let gossip_config = gossipsub::ConfigBuilder::default()
                .max_transmit_size(proto::EVENT_MAX_BYTES)
                .validation_mode(ValidationMode::Anonymous)
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
                })
                .validate_messages()
                .heartbeat_interval(Duration::from_secs(1))
                .build()
                .map_err(|e| e.to_string())?;
            let mut gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)?;
            // Scores only to keep peers out until their hello is accepted (the
            // application score); many honest peers share one address (127.0.0.1,
            // a store's NAT), so no colocation penalty.
            gossipsub.with_peer_score(
                gossipsub::PeerScoreParams {
                    app_specific_weight: 1.0,
                    ip_colocation_factor_weight: 0.0,
                    behaviour_penalty_weight: -1.0,
                    // A score is kept this long after the peer leaves (a refused
                    // peer that redials is graylisted at once); not the default
                    // hour, which throwaway identities would fill.
                    retain_score: Duration::from_secs(120),
                    ..gossipsub::PeerScoreParams::default()
                },
                gossipsub::PeerScoreThresholds::default(),
            )?;
            let mdns = if mdns_enabled {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config {
                        query_interval: MDNS_QUERY_INTERVAL,
                        ..mdns::Config::default()
                    },
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            Ok(Behaviour::new(Fixed {
                limits: libp2p::connection_limits::Behaviour::new(
                    libp2p::connection_limits::ConnectionLimits::default()
                        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                        .with_max_established(Some(MAX_CONNECTIONS))
                        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING)),
                ),
                memory: libp2p::memory_connection_limits::Behaviour::with_max_percentage(0.9),
                blocked: Default::default(),
                identify: identify::Behaviour::new(
                    identify::Config::new("/printmesh/id/1".into(), key.public())
                        .with_agent_version(format!("printmesh/{}", env!("CARGO_PKG_VERSION"))),
                ),
                mdns: Toggle::from(mdns),
                gossipsub,
                serves,
            }))
        })
        .map_err(|e| BuildError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();

    for topic in [
        proto::EVENTS_TOPIC,
        proto::REVOCATIONS_TOPIC,
        wire::content::CATALOGUES_TOPIC,
    ] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(topic))
            .map_err(|e| BuildError::Behaviour(e.to_string()))?;
    }
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| BuildError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let local_peer_id = *swarm.local_peer_id();
    let stream = swarm.behaviour().stream.new_control();
    let (command_tx, command_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (event_tx, event_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let client = Client {
        commands: command_tx,
        local_peer_id,
        stream,
    };
    let event_loop = EventLoop {
        swarm,
        commands: command_rx,
        events: event_tx,
        pending: PendingRequests::default(),
        replies: FuturesUnordered::new(),
        hello: config.hello,
        gate: config.gate,
        refused: BoundedSet::default(),
        hello_refused: HashMap::new(),
        unadmitted: HashMap::new(),
        admitted: HashMap::new(),
        admission: Admission::new(config.limits),
        known_events: config.known_events,
        catalogues: config.catalogues,
        sync_answers: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SYNC_ANSWERS)),
        own_problem: None,
        rejected: BoundedSet::default(),
        connections: HashMap::new(),
        peers: HashMap::new(),
        static_peers: config.peers.into_iter().map(|a| (a, None)).collect(),
        discovered: HashMap::new(),
        listen_addrs: Vec::new(),
    };
    Ok((client, event_rx, event_loop))
}

impl EventLoop {
    /// Runs until [`Client::shutdown`] or until every client is dropped.
    pub async fn run(mut self) {
        self.redial();
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Run(job)) => job(&mut self.swarm, &mut self.pending),
                    Some(Command::Peers(tx)) => { let _ = tx.send(self.peers.values().cloned().collect()); }
                    Some(Command::ListenAddrs(tx)) => { let _ = tx.send(self.listen_addrs.clone()); }
                    Some(Command::Revoke(bytes, tx)) => { let _ = tx.send(self.revoke(bytes)); }
                    Some(Command::ConnectionsTo(peer, tx)) => { let _ = tx.send(self.connections.get(&peer).copied().unwrap_or(0)); }
                    Some(Command::Shutdown(done)) => {
                        self.flush_answers().await;
                        tracing::debug!("swarm loop stopped");
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.flush_answers().await;
                        break;
                    }
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(Some(job)) = self.replies.next(), if !self.replies.is_empty() => {
                    job(&mut self.swarm, &mut self.pending);
                }
                _ = redial.tick() => {
                    self.redial();
                    self.housekeeping();
                }
            }
        }
        tracing::debug!("swarm loop stopped");
    }

    fn redial(&mut self) {
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        for (peer, addr) in &self.discovered {
            if !connected.contains(peer) {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::debug!(%peer, %addr, "dial: {e}");
                }
            }
        }
        for (addr, peer) in &self.static_peers {
            let is_up = peer.is_some_and(|p| connected.contains(&p));
            if !is_up {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::debug!(%addr, "dial: {e}");
                }
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                self.connections.insert(peer_id, num_established.get());
                self.admission.set_connected(peer_id, true);
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    for (addr, peer) in &mut self.static_peers {
                        if without_p2p(addr) == without_p2p(address) {
                            *peer = Some(peer_id);
                        }
                    }
                }
                if num_established.get() == 1 {
                    tracing::debug!(%peer_id, "connected");
                    self.unadmitted.insert(peer_id, Instant::now());
                    // In an enrolled network nothing gossiped reaches a peer, nor is
                    // taken from it, until its hello is accepted; it joins the mesh at
                    // the heartbeat after. (In a development network any peer of the
                    // network is served: it joins the mesh at once, as it subscribes.)
                    if self.gate.is_some() {
                        self.swarm
                            .behaviour_mut()
                            .gossipsub
                            .set_application_score(&peer_id, UNADMITTED_SCORE);
                    }
                    let hello = self.my_hello();
                    self.swarm
                        .behaviour_mut()
                        .hello
                        .send_request(&peer_id, hello);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.connections.remove(&peer_id);
                    self.admission.set_connected(peer_id, false);
                    self.unadmitted.remove(&peer_id);
                    self.admitted.remove(&peer_id);
                    if self.peers.remove(&peer_id).is_some() {
                        tracing::info!(%peer_id, "peer gone");
                        let _ = self.events.try_send(NodeEvent::PeerGone(peer_id));
                    }
                } else {
                    self.connections.insert(peer_id, num_established);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, "outgoing connection failed: {error}");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!("incoming connection failed: {error}");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        let Some(event) = self.dispatch(event) else {
            return;
        };
        match event {
            BehaviourEvent::Hello(e) => self.on_hello(e),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let acceptance = if message.topic
                    == IdentTopic::new(proto::REVOCATIONS_TOPIC).hash()
                {
                    self.judge_revocation(propagation_source, &message.data)
                } else if message.topic == IdentTopic::new(wire::content::CATALOGUES_TOPIC).hash() {
                    self.judge_catalogue(propagation_source, &message.data)
                } else {
                    self.judge_event(propagation_source, &message.data)
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let local = *self.swarm.local_peer_id();
                for (peer, addr) in found {
                    tracing::debug!(%peer, %addr, "mDNS discovered");
                    self.discovered.insert(peer, addr.clone());
                    // Both sides discover each other at once; if both dial, both
                    // handshakes can fail. The lower peer id dials now; the redial
                    // tick covers the rest.
                    if local < peer && !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(gone)) => {
                for (peer, _) in gone {
                    self.discovered.remove(&peer);
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                tracing::debug!(%peer_id, agent = %info.agent_version, "identified");
            }
            _ => {}
        }
    }

    /// What becomes of a gossiped catalogue: a new one that checks is kept (by a node
    /// that keeps catalogues) and passed on; one held already, or older, is not passed
    /// on; one that does not check is rejected (logged once per reason).
    fn judge_catalogue(&mut self, source: PeerId, data: &[u8]) -> MessageAcceptance {
        use printmesh_protocol::content::{SignedCatalogue, CATALOGUE_MAX_BYTES};
        let signed: SignedCatalogue = match codec::decode_frame(data, CATALOGUE_MAX_BYTES + 4096) {
            Ok(s) => s,
            Err(e) => {
                self.strike(source, &format!("a catalogue that does not decode: {e}"));
                return MessageAcceptance::Reject;
            }
        };
        let verdict = match &self.catalogues {
            Some(held) => held.offer(signed).map(|kept| kept.is_some()),
            None => printmesh_protocol::content::verify_catalogue(&signed)
                .map(|_| true)
                .map_err(|e| e.to_string()),
        };
        match verdict {
            Ok(true) => MessageAcceptance::Accept,
            Ok(false) => MessageAcceptance::Ignore,
            Err(e) => {
                if self.rejected.insert(format!("{source} catalogue {e}")) {
                    tracing::warn!(peer = %source, "gossiped catalogue refused: {e}");
                }
                MessageAcceptance::Reject
            }
        }
    }

    /// What becomes of a gossiped revocation: a new one is applied and passed on; one
    /// this node had is not passed on again; a bad one is rejected and struck.
    fn judge_revocation(&mut self, source: PeerId, data: &[u8]) -> MessageAcceptance {
        match self.apply_revocation(data) {
            Ok((_, false)) => MessageAcceptance::Ignore,
            Ok((text, true)) => {
                tracing::warn!(peer = %source, "{text}");
                MessageAcceptance::Accept
            }
            Err(e) if self.gate.is_none() => {
                tracing::debug!("revocation ignored: {e}");
                MessageAcceptance::Ignore
            }
            Err(e) => {
                if self.rejected.insert(format!("{source} revocation {e}")) {
                    tracing::warn!(peer = %source, "rejected revocation: {e}");
                }
                self.strike(source, "rejected revocations");
                MessageAcceptance::Reject
            }
        }
    }

    /// What becomes of a gossiped order event. One this node has (a replay, after
    /// gossipsub's own minute of memory) is not checked, taken, passed on, nor charged
    /// to its origin, and the peer that keeps sending them is struck. Then the
    /// origin's signature and (enrolled) certificate and role, then its budget.
    fn judge_event(&mut self, source: PeerId, data: &[u8]) -> MessageAcceptance {
        let replay = self
            .known_events
            .as_ref()
            .and_then(|log| crate::events::peek_event(data).filter(|e| log.has(e)));
        if let Some(event) = replay {
            if self.rejected.insert(format!("{source} replayed")) {
                let origin = peer_name(&event.origin);
                tracing::warn!(%origin, from = %source, order_id = %event.order_id, seq = event.seq, "an event this node has already (replayed): ignored");
            }
            let verdict = self.admission.replay(source, Instant::now());
            self.carry_out(source, verdict, "replayed events");
            return MessageAcceptance::Ignore;
        }
        let event = match judge_frame(self.gate.as_ref(), data) {
            Ok(event) => event,
            Err(e) => {
                // Logged once per reason, however often it is repeated.
                if self.rejected.insert(e.clone()) {
                    tracing::warn!(peer = %source, "rejected gossiped event: {e}");
                }
                self.strike(source, "rejected events");
                return MessageAcceptance::Reject;
            }
        };
        if !self
            .admission
            .event(&event.origin, event.kind.emitted_by(), Instant::now())
        {
            let origin = peer_name(&event.origin);
            if self.rejected.insert(format!("{origin} event budget")) {
                tracing::warn!(%origin, "over its event budget: events dropped");
            }
            if event.origin == source.to_bytes() {
                self.strike(source, "events over its budget");
            }
            return MessageAcceptance::Ignore;
        }
        let incoming = IncomingEvent {
            event,
            frame: data.to_vec(),
            done: None,
        };
        if self.events.try_send(NodeEvent::Incoming(incoming)).is_err() {
            // Not lost for good: the next sync with a peer that has it brings it.
            tracing::warn!("event queue full: dropping a gossiped event");
        }
        MessageAcceptance::Accept
    }

    /// Answers a peer that asks what it missed, off the loop (a page reads up to
    /// [`proto::SYNC_MAX_SCAN`] stored events): a kiosk is shown its own store's
    /// orders only.
    /// Each peer has a budget of pages of its own ([`SYNC_BUDGET`]), and at most
    /// [`MAX_SYNC_ANSWERS`] are read at once.
    fn answer_sync(&mut self, inbound: Inbound<SyncProto>, role: Role, peer: PeerId) {
        let unavailable = |reason: &str| SyncResponse::Unavailable {
            reason: reason.into(),
        };
        let verdict = self.admission.sync_page(peer, Instant::now());
        if !self.carry_out(peer, verdict, "sync pages over its budget") {
            if self.rejected.insert(format!("{peer} sync budget")) {
                tracing::warn!(%peer, "over its sync budget: pages refused");
            }
            return inbound.respond(unavailable("over your sync budget"));
        }
        let Some(log) = self.known_events.clone() else {
            return inbound.respond(unavailable("this node keeps no event log"));
        };
        let Ok(slot) = self.sync_answers.clone().try_acquire_owned() else {
            return inbound.respond(unavailable("busy"));
        };
        let viewer = crate::sync::Viewer::of(role, inbound.store.clone());
        tokio::task::spawn_blocking(move || {
            let answer = crate::sync::answer(&log, &inbound.request, &viewer);
            drop(slot);
            inbound.respond(answer);
        });
    }

    /// Checks a revocation against the root key, remembers it (in the gate, and on
    /// disk), and cuts the revoked peer off at once.
    fn apply_revocation(&mut self, bytes: &[u8]) -> Result<(String, bool), String> {
        let gate = self
            .gate
            .as_ref()
            .ok_or("this node does not check membership")?;
        let signed = printmesh_protocol::membership::SignedRevocation::decode(bytes)
            .map_err(|e| e.to_string())?;
        let (r, new) = gate.accept_revocation(&signed).map_err(|e| e.to_string())?;
        if let Some(peer) = PeerId::from_bytes(&r.peer_id).ok().filter(|_| new) {
            self.shut_out(peer);
        }
        let who = peer_name(&r.peer_id);
        let text = if new {
            format!(
                "certificate {} of {who} revoked: disconnected and refused",
                r.serial
            )
        } else {
            format!("certificate {} of {who} was revoked already", r.serial)
        };
        Ok((text, new))
    }

    /// A revocation from the operator: applied, then gossiped on.
    fn revoke(&mut self, bytes: Vec<u8>) -> Result<String, String> {
        let (text, _) = self.apply_revocation(&bytes)?;
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(proto::REVOCATIONS_TOPIC), bytes)
        {
            // A duplicate (already gossiped) or no peers yet: each node has it on disk.
            tracing::info!("revocation not gossiped: {e}");
        }
        Ok(text)
    }

    fn accept_hello(&mut self, peer: PeerId, hello: Hello) {
        if hello.network != self.hello.network {
            let network: String = hello.network.chars().take(64).collect();
            if self.refused.insert(format!("{peer} network {network}")) {
                tracing::warn!(%peer, %network, "peer belongs to another network; disconnecting");
            }
            self.note_hello_refused(peer);
            self.shut_out(peer);
            return;
        }
        if let Some(gate) = &self.gate {
            let cert = match gate.admit(peer, &hello) {
                Ok(cert) => cert,
                Err(e) => return self.refuse(peer, &hello, e.to_string()),
            };
            // A member passes on the revocations it knows (an outsider's are not
            // even looked at); one of them may have been its own.
            if self.learn_revocations(peer, &hello.revocations) {
                if let Some(Err(e)) = self.gate.as_ref().map(|g| g.check(&cert, peer)) {
                    return self.refuse(peer, &hello, e.to_string());
                }
            }
            self.admitted.insert(peer, cert);
        }
        self.refused.forget(&format!("{peer} "));
        self.rejected.forget(&format!("{peer} "));
        self.hello_refused.remove(&peer);
        self.unadmitted.remove(&peer);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, 0.0);
        let info = PeerInfo { peer, hello };
        if self.peers.get(&peer) != Some(&info) {
            tracing::info!(%peer, role = %info.hello.role, name = %info.hello.name, "peer ready");
            self.peers.insert(peer, info.clone());
            let _ = self.events.try_send(NodeEvent::PeerReady(info));
        }
    }

    /// Applies the revocations a member's hello passes on; true if one was new here.
    fn learn_revocations(&mut self, from: PeerId, revocations: &[Vec<u8>]) -> bool {
        let mut learned = false;
        for bytes in revocations.iter().take(proto::MAX_HELLO_REVOCATIONS) {
            match self.apply_revocation(bytes) {
                Ok((text, true)) => {
                    tracing::warn!(%from, "{text}");
                    learned = true;
                }
                Ok((_, false)) => {}
                Err(e) => tracing::debug!(%from, "revocation in a hello ignored: {e}"),
            }
        }
        learned
    }

    /// Refuses a peer whose hello does not prove it belongs: logged once for each
    /// peer and reason, shut out, and nothing of it kept.
    fn refuse(&mut self, peer: PeerId, hello: &Hello, reason: String) {
        if self.refused.insert(format!("{peer} {reason}")) {
            let name: String = hello.name.chars().take(80).collect();
            tracing::warn!(%peer, role = %hello.role, %name, "refused: {reason}");
        }
        self.note_hello_refused(peer);
        self.shut_out(peer);
    }

    /// Remembers that `peer` greeted and was refused (bounded: past
    /// [`BoundedSet::MAX`] peers the oldest minute's are forgotten).
    fn note_hello_refused(&mut self, peer: PeerId) {
        let now = Instant::now();
        if self.hello_refused.len() >= BoundedSet::MAX {
            self.hello_refused
                .retain(|_, at| now.saturating_duration_since(*at) < HELLO_FAILURE_WINDOW);
        }
        if self.hello_refused.len() < BoundedSet::MAX {
            self.hello_refused.insert(peer, now);
        }
    }

    /// Shuts a peer out: graylisted in gossip, no longer a peer (the role hears it is
    /// gone), disconnected.
    fn shut_out(&mut self, peer: PeerId) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, UNADMITTED_SCORE);
        self.unadmitted.remove(&peer);
        self.admitted.remove(&peer);
        if self.peers.remove(&peer).is_some() {
            let _ = self.events.try_send(NodeEvent::PeerGone(peer));
        }
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// Strikes a peer (a rejected revocation or event): see [`Self::carry_out`].
    fn strike(&mut self, peer: PeerId, why: &str) {
        let verdict = self
            .admission
            .strike(peer, Refusal::Rejected, Instant::now());
        self.carry_out(peer, verdict, why);
    }

    /// Carries out an admission verdict; whether what the peer sent is taken. A peer
    /// that struck out is flooding: it is cut off for [`CUT_OFF_FOR`] (disconnected,
    /// its connections refused, everyone else served as before).
    fn carry_out(&mut self, peer: PeerId, verdict: Verdict, why: &str) -> bool {
        match verdict {
            Verdict::Take => true,
            Verdict::Refuse(_) => false,
            Verdict::CutOff(_) => {
                tracing::warn!(%peer, "flooding ({why}): cut off for {} s", CUT_OFF_FOR.as_secs());
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                self.shut_out(peer);
                false
            }
        }
    }

    /// A refused request, logged once per peer, protocol and reason.
    fn log_refused_request(
        &mut self,
        peer: PeerId,
        role: Option<Role>,
        protocol: &str,
        refusal: Refusal,
    ) {
        let key = format!("{peer} {protocol} {refusal:?}");
        if !self.rejected.insert(key) {
            return;
        }
        match refusal {
            Refusal::Unadmitted => {
                tracing::warn!(%peer, protocol, "request from a peer that has not said hello; ignored")
            }
            Refusal::RoleMayNot(role) => {
                tracing::warn!(%peer, %role, protocol, "request from a role that may not send it; ignored")
            }
            Refusal::OverBudget(per_sec) => {
                let role = role.map(|r| r.to_string()).unwrap_or_default();
                tracing::warn!(%peer, %role, protocol, "over its request budget ({per_sec}/s): requests dropped")
            }
            Refusal::Rejected => {}
        }
    }

    /// Every tick: disconnects peers that did not prove themselves in time and those
    /// whose certificates expired since, lets cut-off peers back when their time is
    /// up, and says so once when this node's own certificate stops counting.
    fn housekeeping(&mut self) {
        let now = Instant::now();
        let late: Vec<PeerId> = self
            .unadmitted
            .iter()
            .filter(|(_, since)| now.duration_since(**since) > ADMISSION_DEADLINE)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in late {
            tracing::debug!(%peer, "no accepted hello in time: disconnecting");
            self.unadmitted.remove(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        for peer in self.admission.cut_offs_over(now) {
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            tracing::info!(%peer, "cut-off over: the peer may connect again");
        }
        let Some(gate) = &self.gate else {
            return;
        };
        let lapsed: Vec<(PeerId, String)> = self
            .admitted
            .iter()
            .filter_map(|(peer, cert)| {
                gate.check(cert, *peer)
                    .err()
                    .map(|e| (*peer, e.to_string()))
            })
            .collect();
        let own = gate
            .own_problem(*self.swarm.local_peer_id())
            .map(|e| e.to_string());
        for (peer, reason) in lapsed {
            match self.peers.get(&peer).map(|info| info.hello.clone()) {
                Some(hello) => self.refuse(peer, &hello, reason),
                None => self.shut_out(peer),
            }
        }
        if own != self.own_problem {
            if let Some(problem) = &own {
                tracing::error!("this node's own certificate: {problem}; its peers refuse it");
            }
            self.own_problem = own;
        }
    }

    /// This node's hello, with the revocations it knows.
    fn my_hello(&self) -> Hello {
        let mut hello = self.hello.clone();
        if let Some(gate) = &self.gate {
            hello.revocations = gate.revocations();
        }
        hello
    }

    fn on_hello(&mut self, event: request_response::Event<Hello, Hello>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let verdict = self.admission.hello(peer, Instant::now());
                    if !self.carry_out(peer, verdict, "hellos") {
                        return;
                    }
                    let hello = self.my_hello();
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .hello
                        .send_response(channel, hello);
                    self.accept_hello(peer, request);
                }
                request_response::Message::Response { response, .. } => {
                    self.accept_hello(peer, response)
                }
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                // Without a hello the peer is useless to us: drop the connection so a
                // configured peer is dialled again and greets again. Logged once per
                // peer and reason; a peer that keeps coming back without a hello is
                // cut off (its redials are refused, longer each time).
                let reason = match &error {
                    request_response::OutboundFailure::DialFailure => "dial failure",
                    request_response::OutboundFailure::Timeout => "timeout",
                    request_response::OutboundFailure::ConnectionClosed => "connection closed",
                    request_response::OutboundFailure::UnsupportedProtocols => {
                        "it does not speak the hello protocol"
                    }
                    request_response::OutboundFailure::Io(_) => "i/o error",
                };
                if self
                    .rejected
                    .insert(format!("{peer} hello failed {reason}"))
                {
                    tracing::info!(%peer, "hello failed ({reason}): {error}; disconnecting");
                }
                // A connection closed because its hello was refused here is not a
                // hello the peer failed (its refusal is logged once per reason).
                let refused_here = self
                    .hello_refused
                    .get(&peer)
                    .is_some_and(|at| at.elapsed() < HELLO_FAILURE_WINDOW);
                let verdict = match error {
                    // Not the peer's doing.
                    request_response::OutboundFailure::DialFailure => Verdict::Take,
                    _ if refused_here => Verdict::Take,
                    _ => self.admission.hello_failed(peer, Instant::now()),
                };
                if let Verdict::CutOff(_) = verdict {
                    tracing::warn!(%peer, "connects again and again without a hello ({reason}): its connections are refused for a while");
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                    self.shut_out(peer);
                    return;
                }
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // A hello dropped over budget is no news; the rest once each.
                if !matches!(error, request_response::InboundFailure::ResponseOmission)
                    && self.rejected.insert(format!("{peer} hello {error}"))
                {
                    tracing::warn!(%peer, "bad hello: {error}");
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    pub(super) fn on_request_response<P: Served>(
        &mut self,
        event: request_response::Event<P::Request, P::Response>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request,
                    channel,
                    request_id,
                } => {
                    let info = self.peers.get(&peer);
                    let role = info.map(|i| i.hello.role);
                    let store = info.and_then(|i| i.hello.store.clone());
                    let verdict = self.admission.request(peer, role, &P::SPEC, Instant::now());
                    let refusal = match verdict {
                        Verdict::Take => None,
                        Verdict::Refuse(r) | Verdict::CutOff(r) => Some(r),
                    };
                    if let Some(refusal) = refusal {
                        self.log_refused_request(peer, role, P::SPEC.id, refusal);
                        self.carry_out(peer, verdict, refusal.flood());
                        return;
                    }
                    let Some(role) = role else {
                        return;
                    };
                    let (tx, rx) = oneshot::channel::<P::Response>();
                    let inbound = Inbound {
                        peer,
                        store,
                        request,
                        reply: tx,
                    };
                    match P::inbound(inbound) {
                        NodeEvent::Sync(inbound) => self.answer_sync(inbound, role, peer),
                        event => {
                            if self.events.try_send(event).is_err() {
                                tracing::warn!(%peer, protocol = P::SPEC.id, "role is busy: request dropped");
                                return;
                            }
                        }
                    }
                    self.replies.push(
                        async move {
                            let response = rx.await.ok()?;
                            let job: SwarmJob = Box::new(move |swarm, pending| {
                                if P::behaviour(swarm.behaviour_mut())
                                    .send_response(channel, response)
                                    .is_err()
                                {
                                    tracing::debug!(
                                        protocol = P::SPEC.id,
                                        "peer left before the answer"
                                    );
                                } else {
                                    pending.answering.insert((P::SPEC.id, request_id));
                                }
                            });
                            Some(job)
                        }
                        .boxed(),
                    );
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, tx)) = P::pending(&mut self.pending).remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, tx)) = P::pending(&mut self.pending).remove(&request_id) {
                    let _ = tx.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                self.pending.answering.remove(&(P::SPEC.id, request_id));
                // An answer we chose not to give (a request refused above) is no news.
                if !matches!(error, request_response::InboundFailure::ResponseOmission) {
                    tracing::warn!(%peer, protocol = P::SPEC.id, "inbound request failed: {error}");
                }
            }
            request_response::Event::ResponseSent { request_id, .. } => {
                self.pending.answering.remove(&(P::SPEC.id, request_id));
            }
        }
    }

    /// After a shutdown command: the answers the role gave are handed to the swarm and
    /// written out, and the swarm runs on a moment ([`ANSWER_GRACE`]) so the peers read
    /// them before the connections drop; [`ANSWER_FLUSH`] at most in all.
    async fn flush_answers(&mut self) {
        let deadline = tokio::time::sleep(ANSWER_FLUSH);
        tokio::pin!(deadline);
        let mut quiet_since: Option<Instant> = None;
        loop {
            if self.replies.is_empty() && self.pending.answering.is_empty() {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= ANSWER_GRACE {
                    return;
                }
            } else {
                quiet_since = None;
            }
            tokio::select! {
                Some(job) = self.replies.next(), if !self.replies.is_empty() => {
                    if let Some(job) = job {
                        job(&mut self.swarm, &mut self.pending);
                    }
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = tokio::time::sleep(ANSWER_GRACE / 5) => {}
                _ = &mut deadline => {
                    tracing::warn!(
                        "answers still unsent after {} ms: stopping",
                        ANSWER_FLUSH.as_millis()
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_addresses_match_exactly_with_or_without_peer_id() {
        let peer = PeerId::random();
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/4710".parse().unwrap();
        let b: Multiaddr = "/ip4/127.0.0.1/tcp/47101".parse().unwrap();
        let a_full = a.clone().with(libp2p::multiaddr::Protocol::P2p(peer));
        assert_eq!(without_p2p(&a_full), a);
        assert_ne!(without_p2p(&a), without_p2p(&b));
    }
}
