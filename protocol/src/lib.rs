//! The printmesh wire protocol: pure data and pure logic, no IO.
//!
//! Every type that crosses the network or lands in a node's sled store is defined here,
//! together with the one codec that turns it into bytes ([`codec`]) and the state
//! machines every node applies in the same way ([`order`]). Clocks and randomness are
//! passed in by the caller, so tests and simulations can drive everything
//! deterministically.

pub mod capacity;
pub mod card;
pub mod codec;
pub mod content;
pub mod ids;
pub mod ledger;
pub mod membership;
pub mod messages;
pub mod money;
pub mod order;
pub mod pinblock;
pub mod pricing;
pub mod seal;
pub mod secret;
pub mod signed;
pub mod wire;

pub use card::{CardData, Expiry, Pan};
pub use ids::{AuthCode, BlobId, OrderId, StoreId};
pub use money::{Currency, Money};
pub use secret::Secret;
