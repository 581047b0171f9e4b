//! The printmesh node runtime and its roles.
//!
//! - [`net`]: the one libp2p swarm loop (`Client` / `EventLoop`), protocols and codec.
//! - [`store`]: the node's sled database as typed trees.
//! - [`blobs`]: BLAKE3-addressed images on disk and the resumable stream protocol.
//! - [`events`]: signed, gossiped order events and each node's event log.
//! - [`sync`]: anti-entropy, each node asking its peers for the events it missed.
//! - [`node`]: starting a node from its config and plugging its role in.
//! - [`roles`]: kiosk, intermediary, acquirer, lab.
//! - [`kiosk`]: the kiosk's devices and customer screens.
//! - [`demo`]: the whole network in one process.

pub mod blobs;
pub mod cards;
pub mod config;
pub mod demo;
pub mod events;
pub mod hotfolder;
pub mod inspect;
pub mod ipp;
pub mod kiosk;
pub mod membership;
pub mod net;
pub mod node;
pub mod pdf;
pub mod render;
pub mod report;
pub mod roles;
pub mod store;
pub mod sync;

/// The memory card: DCF files, the camera's DPOF order, EXIF (parsed in
/// `printmesh-formats`).
pub use printmesh_formats::media;
