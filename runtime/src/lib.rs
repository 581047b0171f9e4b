//! The printmesh node runtime: everything a node does whatever its role. It never names
//! a role; roles (`printmesh-nodes`) plug in through [`role::Role`] and ask the
//! protocol (`printmesh_protocol::wire`) what a role may send.
//!
//! - [`net`]: the one libp2p swarm loop (`Client` / `EventLoop`), the protocol table,
//!   admission (hello, certificates, budgets, strikes).
//! - [`store`]: the node's sled database as typed trees.
//! - [`blobs`]: BLAKE3-addressed images on disk and the resumable stream protocol.
//! - [`events`]: signed, gossiped order events and each node's event log.
//! - [`sync`]: anti-entropy, each node asking its peers for the events it missed.
//! - [`membership`]: the root's certificates and revocations, the admission gate.
//! - [`config`]: the common part of a node's config.
//! - [`node`]: starting a node, its admin socket, stopping it.
//! - [`role`]: the trait a role implements, and serving it.
//! - [`failpoint`]: named crash points for the fault tests (`PRINTMESH_CRASH_AT`).

pub mod blobs;
pub mod catalogues;
pub mod config;
pub mod events;
pub mod failpoint;
pub mod fetch;
pub mod membership;
pub mod net;
pub mod node;
pub mod role;
pub mod store;
pub mod sync;
