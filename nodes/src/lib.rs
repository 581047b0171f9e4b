//! The printmesh roles, on top of the runtime (`printmesh-runtime`, re-exported here as
//! [`net`], [`store`], [`blobs`], [`events`], [`sync`], [`membership`]) and the
//! protocol.
//!
//! - [`config`]: a node's config file: the runtime's part and its role's section.
//! - [`node`]: the runtime's node, and starting the role a config names.
//! - [`roles`]: kiosk, intermediary, acquirer, lab, courier.
//! - [`testnet`]: the one way tests, benches and the demo lay out a network.
//! - [`demo`]: the whole network in one process.

pub mod cards;
pub mod config;
pub mod demo;
pub mod demo_catalogue;
pub mod fatcard;
pub mod node;
pub mod report;
pub mod roles;
pub mod testnet;

pub use printmesh_runtime::{blobs, events, failpoint, membership, net, role, store, sync};

/// The memory card: DCF files, the camera's DPOF order, EXIF (parsed in
/// `printmesh-formats`).
pub use printmesh_formats::media;
