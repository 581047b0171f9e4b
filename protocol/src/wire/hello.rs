//! Node introduction (`/printmesh/hello/2`), both ways, when a connection opens: role,
//! name, network, and in an enrolled network the certificate and known revocations.

use serde::{Deserialize, Serialize};

use super::{Role, Spec};
use crate::ids::StoreId;

/// Node introduction: role, name, network.
pub const ID: &str = "/printmesh/hello/2";
/// Room for a certificate and [`MAX_HELLO_REVOCATIONS`] revocations.
pub const MAX_BYTES: usize = 96 * 1024;
/// Most revocations one hello passes on (the newest).
pub const MAX_HELLO_REVOCATIONS: usize = 256;
/// Any node greets; admission judges what it says.
pub const SPEC: Spec = Spec {
    id: ID,
    max_request_bytes: MAX_BYTES,
    max_response_bytes: MAX_BYTES,
    from: &Role::ALL,
    budgeted: false,
};

/// Sent by both sides when a connection opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Nodes of different networks ignore each other.
    pub network: String,
    pub role: Role,
    pub name: String,
    pub store: Option<StoreId>,
    /// The node's membership certificate (an encoded
    /// `membership::SignedCertificate`), in a network that enrols its nodes.
    pub certificate: Option<Vec<u8>>,
    /// The revocations the node knows (encoded `membership::SignedRevocation`s), so
    /// a node that was away when one was gossiped learns it on its next connection.
    pub revocations: Vec<Vec<u8>>,
}
