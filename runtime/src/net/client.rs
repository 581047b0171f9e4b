//! The cloneable handle to the swarm loop: every call is a [`Command`] with a oneshot
//! for its answer.

use super::*;

pub(super) type SwarmJob = Box<dyn FnOnce(&mut Swarm<Behaviour>, &mut PendingRequests) + Send>;

pub enum Command {
    /// Work to do on the swarm (send a request, publish, dial).
    Run(SwarmJob),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    /// A revocation the operator hands this node: applied here and gossiped.
    Revoke(Vec<u8>, oneshot::Sender<Result<String, String>>),
    ConnectionsTo(PeerId, oneshot::Sender<u32>),
    /// Stop: the answers in hand are written out, then the loop ends and says so.
    Shutdown(oneshot::Sender<()>),
}

/// A cloneable handle to the swarm loop.
#[derive(Clone)]
pub struct Client {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) local_peer_id: PeerId,
    pub(super) stream: libp2p_stream::Control,
}

impl Client {
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// A handle for opening and accepting raw streams (blobs).
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.stream.clone()
    }

    /// Whether the swarm loop has stopped.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    async fn command(&self, c: Command) -> Result<(), NetError> {
        self.commands.send(c).await.map_err(|_| NetError::Shutdown)
    }

    /// Sends a request and waits for the peer's answer.
    pub async fn request<P: Served>(
        &self,
        peer: PeerId,
        request: P::Request,
    ) -> Result<P::Response, NetError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Run(Box::new(move |swarm, pending| {
            let id = P::behaviour(swarm.behaviour_mut()).send_request(&peer, request);
            P::pending(pending).insert(id, (peer, tx));
        })))
        .await?;
        rx.await.map_err(|_| NetError::Shutdown)?
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Run(Box::new(move |swarm, _| {
            let _ = tx.send(swarm.dial(addr).map_err(|e| NetError::Dial(e.to_string())));
        })))
        .await?;
        rx.await.map_err(|_| NetError::Shutdown)?
    }

    /// Announces a catalogue (a `SignedCatalogue` frame) on the catalogues topic.
    pub async fn publish_catalogue(&self, data: Vec<u8>) -> Result<(), NetError> {
        self.publish(printmesh_protocol::wire::content::CATALOGUES_TOPIC, data)
            .await
    }

    /// Publishes bytes on the order-events topic.
    pub async fn publish_event(&self, data: Vec<u8>) -> Result<(), NetError> {
        self.publish(proto::EVENTS_TOPIC, data).await
    }

    async fn publish(&self, topic: &'static str, data: Vec<u8>) -> Result<(), NetError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Run(Box::new(move |swarm, _| {
            let result = swarm
                .behaviour_mut()
                .gossipsub
                .publish(IdentTopic::new(topic), data)
                .map(|_| ())
                .map_err(|e| NetError::Publish(e.to_string()));
            let _ = tx.send(result);
        })))
        .await?;
        rx.await.map_err(|_| NetError::Shutdown)?
    }

    /// Applies a revocation the root signed (an encoded `SignedRevocation`) and gossips
    /// it to the network. Returns what was revoked.
    pub async fn revoke(&self, signed: Vec<u8>) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Revoke(signed, tx))
            .await
            .map_err(|e| e.to_string())?;
        rx.await
            .map_err(|_| "the node is shutting down".to_string())?
    }

    /// How many connections this node has to `peer` right now.
    pub async fn connections_to(&self, peer: PeerId) -> u32 {
        let (tx, rx) = oneshot::channel();
        if self
            .command(Command::ConnectionsTo(peer, tx))
            .await
            .is_err()
        {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    pub async fn peers(&self) -> Vec<PeerInfo> {
        let (tx, rx) = oneshot::channel();
        if self.command(Command::Peers(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    pub async fn peers_with_role(&self, role: Role) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .peers()
            .await
            .into_iter()
            .filter(|p| p.hello.role == role)
            .collect();
        peers.sort_by_key(|p| p.peer);
        peers
    }

    /// Waits (polling, bounded by `timeout`) until a peer of `role` is ready.
    pub async fn wait_for_role(&self, role: Role, timeout: Duration) -> Result<PeerInfo, NetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(p) = self.peers_with_role(role).await.into_iter().next() {
                return Ok(p);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NetError::NoPeer(role));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `count` peers of `role` have said hello.
    pub async fn wait_for_peers(
        &self,
        role: Role,
        count: usize,
        timeout: Duration,
    ) -> Result<(), NetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.peers_with_role(role).await.len() >= count {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NetError::NoPeer(role));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The addresses the node listens on (waits until at least one is known).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        for _ in 0..200 {
            let (tx, rx) = oneshot::channel();
            if self.command(Command::ListenAddrs(tx)).await.is_err() {
                return Vec::new();
            }
            let addrs = rx.await.unwrap_or_default();
            if !addrs.is_empty() {
                return addrs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Vec::new()
    }

    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.command(Command::Shutdown(tx)).await.is_ok() {
            // The loop answers once its answers are out (bounded by ANSWER_FLUSH).
            let _ = tokio::time::timeout(ANSWER_FLUSH + Duration::from_secs(1), rx).await;
        }
    }
}
