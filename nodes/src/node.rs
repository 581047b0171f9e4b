//! The runtime's node (`printmesh_runtime::node`: start-up, admin socket, serving a
//! role), with the start-up of the role a config names ([`crate::roles`]).

pub use crate::roles::{run_until_signal, start_kiosk, start_role};
pub use printmesh_runtime::node::*;
