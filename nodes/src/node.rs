//! The runtime's node (`printmesh_runtime::node`: start-up, admin socket, serving a
//! role), with the start-up of the role a config names ([`crate::roles`]).

pub use crate::roles::{run_until_signal, start_kiosk, start_role};
/// The node identity key type (libp2p ed25519), for callers without libp2p.
pub use libp2p::identity::Keypair;
pub use printmesh_runtime::node::*;
