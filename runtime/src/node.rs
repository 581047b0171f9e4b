//! Starting a node: its data directory, identity key, sled database, blob store, swarm
//! loop and blob server; then the role that config names, until a signal stops it.

use std::io;
use std::path::Path;
use std::sync::Arc;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use printmesh_protocol::messages::Hello;
use thiserror::Error;
use tokio::sync::{mpsc, Semaphore};

use crate::blobs::{serve_blobs, BlobStore};
use crate::config::{ConfigError, NodeConfig};
use crate::events::{EventError, EventLog};
use crate::net::{self, BuildError, Client, NetConfig, NodeEvent, Serves};
use crate::role::Stopping;
use crate::store::{Db, StoreError};

/// Most role handlers running at once; further events wait (the swarm loop does not).
pub const MAX_CONCURRENT_HANDLERS: usize = 64;
/// How long a stopping node waits for the requests in hand.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: io::Error },
    #[error("identity key {path}: {reason}")]
    Identity { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Events(#[from] EventError),
    #[error(transparent)]
    Net(#[from] BuildError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Role(String),
}

pub use admin::{call as admin_call, AdminInbound, AdminRequest, AdminResponse, RoleCommand};

/// The node's admin socket: `<data_dir>/admin/admin.sock`, a Unix socket in a directory
/// only the node's user can enter (mode 0700, so no other user can reach the socket
/// even for the moment between binding it and narrowing its own mode). An operator's command (`printmesh acquirer settle`, `… report`, `lab ship`)
/// arrives as one frame, reaches the role as [`NodeEvent::Admin`], and its answer goes
/// back as one frame.
pub mod admin {
    use std::path::Path;
    use std::time::Duration;

    use printmesh_protocol::codec::{decode_frame, encode_frame, parse_header, FRAME_HEADER_LEN};
    use printmesh_protocol::messages::Role;
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc, oneshot};

    use crate::net::NodeEvent;

    pub const REQUEST_MAX_BYTES: usize = 4 * 1024;
    pub const RESPONSE_MAX_BYTES: usize = 1024 * 1024;
    /// How long a command may take (a settlement talks to other nodes).
    pub const TIMEOUT: Duration = Duration::from_secs(120);

    /// What reaches a node's admin socket: a command of the node's own (any role), or
    /// one of its role's, in the role's own command type ([`RoleCommand`]).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum AdminRequest {
        /// Any node of an enrolled network: a revocation the root signed (an encoded
        /// `SignedRevocation`), to apply and gossip.
        Revoke { revocation: Vec<u8> },
        /// A command of the role named (its [`RoleCommand`] in the codec). A node of
        /// another role refuses it, naming both.
        Role { role: Role, command: Vec<u8> },
    }

    /// A role's own admin commands: an enum in the role's folder, sent with
    /// [`AdminRequest::role`] and read back with [`AdminInbound::command`].
    pub trait RoleCommand: Serialize + DeserializeOwned + std::fmt::Debug + Send + 'static {
        /// The role whose nodes take these commands.
        const ROLE: Role;
    }

    impl AdminRequest {
        /// A role's command, ready for the socket.
        pub fn role<C: RoleCommand>(command: &C) -> AdminRequest {
            AdminRequest::Role {
                role: C::ROLE,
                // Within the request's cap, or the node refuses it as too large.
                command: encode_frame(command, REQUEST_MAX_BYTES).unwrap_or_default(),
            }
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct AdminResponse {
        pub ok: bool,
        pub text: String,
    }

    impl AdminResponse {
        /// The answer to a command that succeeded with `Ok(text)` or failed.
        pub fn from_result<E: std::fmt::Display>(result: Result<String, E>) -> AdminResponse {
            match result {
                Ok(text) => AdminResponse { ok: true, text },
                Err(e) => AdminResponse {
                    ok: false,
                    text: e.to_string(),
                },
            }
        }
    }

    /// An admin command on its way to the role.
    pub struct AdminInbound {
        request: AdminRequest,
        reply: oneshot::Sender<AdminResponse>,
    }

    impl AdminInbound {
        pub fn into_parts(self) -> (AdminRequest, oneshot::Sender<AdminResponse>) {
            (self.request, self.reply)
        }

        pub fn request(&self) -> &AdminRequest {
            &self.request
        }

        /// The role's command, or the answer the operator gets when it is not one
        /// (already sent).
        pub fn command<C: RoleCommand>(self) -> Option<(C, oneshot::Sender<AdminResponse>)> {
            let refuse = |reply: oneshot::Sender<AdminResponse>, text: String| {
                let _ = reply.send(AdminResponse { ok: false, text });
            };
            match self.request {
                AdminRequest::Role { role, command } if role == C::ROLE => {
                    match decode_frame::<C>(&command, REQUEST_MAX_BYTES) {
                        Ok(c) => Some((c, self.reply)),
                        Err(e) => {
                            refuse(self.reply, format!("not a {role} command: {e}"));
                            None
                        }
                    }
                }
                AdminRequest::Role { role, .. } => {
                    refuse(
                        self.reply,
                        format!(
                            "this node is {}, not {}: check --config",
                            C::ROLE.with_article(),
                            role.with_article()
                        ),
                    );
                    None
                }
                other => {
                    refuse(
                        self.reply,
                        format!("{other:?} is the node's, not its role's"),
                    );
                    None
                }
            }
        }
    }

    pub fn socket_path(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join("admin").join("admin.sock")
    }

    /// Binds the socket (replacing a stale one) and serves it in the background.
    pub fn listen(data_dir: &Path, events: mpsc::Sender<NodeEvent>) -> std::io::Result<()> {
        let path = socket_path(data_dir);
        if let Some(dir) = path.parent() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
                builder.mode(0o700);
                builder.create(dir)?;
                // An existing directory keeps its mode: narrow it.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
            #[cfg(not(unix))]
            builder.create(dir)?;
        }
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let events = events.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_one(stream, events).await {
                        tracing::warn!("admin command failed: {e}");
                    }
                });
            }
        });
        Ok(())
    }

    async fn serve_one(
        mut stream: tokio::net::UnixStream,
        events: mpsc::Sender<NodeEvent>,
    ) -> std::io::Result<()> {
        let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let mut header = [0u8; FRAME_HEADER_LEN];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header))
            .await
            .map_err(|_| bad("no request".into()))??;
        let len = parse_header(header, REQUEST_MAX_BYTES).map_err(|e| bad(e.to_string()))?;
        let mut frame = header.to_vec();
        frame.resize(FRAME_HEADER_LEN + len, 0);
        tokio::time::timeout(
            Duration::from_secs(5),
            stream.read_exact(frame.get_mut(FRAME_HEADER_LEN..).unwrap_or_default()),
        )
        .await
        .map_err(|_| bad("the request stopped halfway".into()))??;
        let request: AdminRequest =
            decode_frame(&frame, REQUEST_MAX_BYTES).map_err(|e| bad(e.to_string()))?;
        tracing::debug!(?request, "admin command");
        let (reply, answer) = oneshot::channel();
        let response = if events
            .send(NodeEvent::Admin(AdminInbound { request, reply }))
            .await
            .is_err()
        {
            AdminResponse {
                ok: false,
                text: "the node is shutting down".into(),
            }
        } else {
            match tokio::time::timeout(TIMEOUT, answer).await {
                Ok(Ok(r)) => r,
                _ => AdminResponse {
                    ok: false,
                    text: "the node did not answer".into(),
                },
            }
        };
        let out = encode_frame(&response, RESPONSE_MAX_BYTES).map_err(|e| bad(e.to_string()))?;
        stream.write_all(&out).await?;
        stream.shutdown().await
    }

    /// Sends a command to the node whose data directory is `data_dir`. `Ok(None)` when
    /// no node is running there.
    pub fn call(data_dir: &Path, request: &AdminRequest) -> std::io::Result<Option<AdminResponse>> {
        use std::io::{Read, Write};
        let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let mut stream = match std::os::unix::net::UnixStream::connect(socket_path(data_dir)) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        stream.set_read_timeout(Some(TIMEOUT + Duration::from_secs(5)))?;
        let frame = encode_frame(request, REQUEST_MAX_BYTES).map_err(|e| bad(e.to_string()))?;
        stream.write_all(&frame)?;
        let mut header = [0u8; FRAME_HEADER_LEN];
        stream.read_exact(&mut header)?;
        let len = parse_header(header, RESPONSE_MAX_BYTES).map_err(|e| bad(e.to_string()))?;
        let mut frame = header.to_vec();
        frame.resize(FRAME_HEADER_LEN + len, 0);
        stream.read_exact(frame.get_mut(FRAME_HEADER_LEN..).unwrap_or_default())?;
        decode_frame(&frame, RESPONSE_MAX_BYTES)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Writes a secret file atomically (temporary file, mode 0600, rename).
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Loads the node's ed25519 identity from `path`, creating it (mode 0600) on first run.
/// A node's identity key, `DATA_DIR/identity.key`, made (with its folder) on first
/// use: what the node runs as, `printmesh peer-id` prints and enrolment certifies.
pub fn identity(data_dir: &Path) -> Result<Keypair, NodeError> {
    std::fs::create_dir_all(data_dir).map_err(|source| NodeError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    load_or_create_identity(&data_dir.join("identity.key"))
}

pub fn load_or_create_identity(path: &Path) -> Result<Keypair, NodeError> {
    let err = |reason: String| NodeError::Identity {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(format!("unreadable: {e}")))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            write_secret_file(path, &bytes).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// A running node's shared parts. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub config: Arc<NodeConfig>,
    pub client: Client,
    pub db: Db,
    pub blobs: Arc<BlobStore>,
    pub events: Arc<EventLog>,
    pub keypair: Keypair,
    /// In an enrolled network, the membership gate: roles check what other nodes
    /// signed (a catalogue, a licence) with it.
    pub gate: Option<crate::membership::Gate>,
    /// The content companies' catalogues this node keeps (checked; gossiped ones are
    /// offered to them by the swarm loop, asked-for ones by the role).
    pub catalogues: Arc<crate::catalogues::Catalogues>,
    /// The role's handlers in flight ([`MAX_CONCURRENT_HANDLERS`] permits).
    pub handlers: Arc<Semaphore>,
    /// Fired by [`Node::shutdown`]: the role's loops and its event queue stop.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    stopping: Stopping,
}

impl Node {
    pub fn peer_id(&self) -> PeerId {
        self.client.local_peer_id()
    }

    /// Full dialable addresses (`…/p2p/<peer id>`).
    pub async fn addresses(&self) -> Vec<Multiaddr> {
        let peer = self.peer_id();
        self.client
            .listen_addrs()
            .await
            .into_iter()
            .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(peer)))
            .collect()
    }

    /// Records, signs and gossips an order event of ours. A failure is logged: the
    /// order's own records are the source of truth, events are its shadow.
    pub async fn emit(
        &self,
        order_id: printmesh_protocol::OrderId,
        kind: printmesh_protocol::messages::EventKind,
    ) {
        if let Err(e) = self
            .events
            .emit(&self.client, order_id, kind, now_ms())
            .await
        {
            tracing::error!(%order_id, "cannot record event: {e}");
        }
    }

    /// Emits the event unless one of its kind for the order is in our log already:
    /// for a role that, on start, makes sure every event its records imply went out
    /// (a crash between a record and its event loses neither). Returns whether it
    /// emitted.
    pub async fn ensure_emitted(
        &self,
        order_id: printmesh_protocol::OrderId,
        kind: printmesh_protocol::messages::EventKind,
    ) -> bool {
        match self.events.emitted(order_id, &kind) {
            Ok(true) => false,
            Ok(false) => {
                tracing::warn!(%order_id, ?kind, "an event our records imply was never sent: sending it now");
                self.emit(order_id, kind).await;
                true
            }
            Err(e) => {
                tracing::error!(%order_id, "cannot read our events: {e}");
                false
            }
        }
    }

    /// Fires when the node stops.
    pub fn stopping(&self) -> Stopping {
        self.stopping.clone()
    }

    /// Stops the node: no new work is taken (the role hears of nothing more and its
    /// loops end), the handlers in flight finish (for at most [`DRAIN_TIMEOUT`]),
    /// then the swarm loop stops and the database is flushed.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let all = MAX_CONCURRENT_HANDLERS as u32;
        match tokio::time::timeout(DRAIN_TIMEOUT, self.handlers.acquire_many(all)).await {
            Ok(Ok(permits)) => drop(permits),
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!(
                "requests still in hand after {} s: stopping without them",
                DRAIN_TIMEOUT.as_secs()
            ),
        }
        self.client.shutdown().await;
        if let Err(e) = self.db.flush().await {
            tracing::error!("final flush failed: {e}");
        }
    }
}

/// Opens a node's state and starts its swarm loop and blob server; it answers every
/// request protocol, and whoever started it handles its events (tests, benches). A
/// role's node is started by [`crate::role::run`].
pub async fn start(
    config: impl Into<NodeConfig>,
) -> Result<(Node, mpsc::Receiver<NodeEvent>), NodeError> {
    start_serving(config.into(), Serves::All).await
}

/// [`start`], answering only the request protocols `serves` names.
pub async fn start_serving(
    config: NodeConfig,
    serves: Serves,
) -> Result<(Node, mpsc::Receiver<NodeEvent>), NodeError> {
    let data_dir = config.data_dir.clone();
    let keypair = identity(&data_dir)?;
    let db = Db::open(&data_dir.join("db"))?;
    let blobs = BlobStore::open(&data_dir.join("blobs")).map_err(|source| NodeError::DataDir {
        path: data_dir.join("blobs").display().to_string(),
        source,
    })?;
    let events = Arc::new(EventLog::open(&db, keypair.clone())?);
    let gate = match &config.membership {
        Some(m) => Some(
            crate::membership::Gate::load(
                m,
                &config.network,
                keypair.public().to_peer_id(),
                config.role,
                &config.name,
                config.store.as_ref(),
                Some(data_dir.join("revocations")),
            )
            .map_err(NodeError::Role)?,
        ),
        None => None,
    };
    let psk = match &config.psk_file {
        Some(path) => Some(crate::membership::load_psk(path).map_err(NodeError::Role)?),
        None => None,
    };
    if let Some(gate) = &gate {
        events.set_certificate(gate.own.clone());
    }
    let sync_gate = gate.clone();
    let role_gate = gate.clone();
    let catalogues = Arc::new(crate::catalogues::Catalogues::open(
        &db,
        &config.network,
        gate.clone(),
    )?);
    let hello = Hello {
        network: config.network.clone(),
        role: config.role,
        name: config.name.clone(),
        store: config.store.clone(),
        certificate: gate.as_ref().map(|g| g.own.clone()),
        // Filled in by the swarm loop with what it knows at each hello.
        revocations: vec![],
    };
    let (client, rx, event_loop) = net::build(
        keypair.clone(),
        NetConfig {
            hello,
            gate,
            psk,
            limits: config.limits,
            known_events: Some(events.clone()),
            catalogues: Some(catalogues.clone()),
            listen: config.listen_addrs(),
            peers: config.peer_addrs(),
            mdns: config.mdns,
            serves,
        },
    )?;
    let admin_events = event_loop.event_sender();
    let syncer = crate::sync::Syncer::new(
        client.clone(),
        events.clone(),
        event_loop.event_sender(),
        db.tree("sync_cursors")?,
        sync_gate,
        config.limits,
    );
    tokio::spawn(event_loop.run());
    tokio::spawn(syncer.run());
    tokio::spawn(serve_blobs(client.clone(), blobs.clone(), config.role));
    match admin::listen(&data_dir, admin_events) {
        Ok(()) => {}
        Err(e) => tracing::warn!("no admin socket in {}: {e}", data_dir.display()),
    }
    let (stop, stopping) = Stopping::new();
    Ok((
        Node {
            config: Arc::new(config),
            client,
            db,
            blobs,
            events,
            keypair,
            gate: role_gate,
            catalogues,
            handlers: Arc::new(Semaphore::new(MAX_CONCURRENT_HANDLERS)),
            stop: Arc::new(stop),
            stopping,
        },
        rx,
    ))
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
