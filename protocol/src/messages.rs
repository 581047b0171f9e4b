//! Every message printmesh nodes exchange, by name: the types live one file per
//! protocol in [`crate::wire`]; this module gathers them (and [`proto`], the protocol
//! ids and caps under their old names) so callers need one import.

pub use crate::wire::auth::{
    AuthRequest, AuthResponse, Authorise, CardToken, HoldTerms, SealedAuthorise,
};
pub use crate::wire::blob::{BlobOffer, BlobReply, BlobVerdict};
pub use crate::wire::events::{EventKind, OrderEvent, SignedEvent, TrackingStage};
pub use crate::wire::hello::Hello;
pub use crate::wire::order::{
    DeclineCode, OrderAccepted, OrderLine, OrderRequest, OrderResponse, PaymentMethod, SealedOrder,
    SubmitOrder,
};
pub use crate::wire::print::{PrintJob, PrintRequest, PrintResponse};
pub use crate::wire::settle::{BatchId, SettleLine, SettleRequest, SettleResponse};
pub use crate::wire::ship::{Parcel, ShipRequest, ShipResponse};
pub use crate::wire::sync::{SyncRequest, SyncResponse};
pub use crate::wire::{BudgetClass, Role};

/// Protocol ids and their size caps, under the names callers know them by.
pub mod proto {
    use crate::wire::{auth, blob, events, hello, order, print, settle, ship, sync};

    pub const HELLO: &str = hello::ID;
    pub const HELLO_MAX_BYTES: usize = hello::MAX_BYTES;
    pub const MAX_HELLO_REVOCATIONS: usize = hello::MAX_HELLO_REVOCATIONS;
    pub const ORDER: &str = order::ID;
    pub const ORDER_MAX_REQUEST_BYTES: usize = order::MAX_REQUEST_BYTES;
    pub const ORDER_MAX_RESPONSE_BYTES: usize = order::MAX_RESPONSE_BYTES;
    pub const AUTH: &str = auth::ID;
    pub const AUTH_MAX_BYTES: usize = auth::MAX_BYTES;
    pub const PRINT: &str = print::ID;
    pub const PRINT_MAX_REQUEST_BYTES: usize = print::MAX_REQUEST_BYTES;
    pub const PRINT_MAX_RESPONSE_BYTES: usize = print::MAX_RESPONSE_BYTES;
    pub const BLOB: &str = blob::ID;
    pub const BLOB_CONTROL_MAX_BYTES: usize = blob::CONTROL_MAX_BYTES;
    pub const BLOB_MAX_BYTES: u64 = blob::MAX_BYTES;
    pub const EVENTS_TOPIC: &str = events::TOPIC;
    pub const REVOCATIONS_TOPIC: &str = events::REVOCATIONS_TOPIC;
    pub const EVENT_MAX_BYTES: usize = events::MAX_BYTES;
    pub const MAX_ORDER_LINES: usize = order::MAX_ORDER_LINES;
    pub const SETTLE: &str = settle::ID;
    pub const SETTLE_MAX_BYTES: usize = settle::MAX_BYTES;
    pub const MAX_SETTLE_LINES: usize = settle::MAX_SETTLE_LINES;
    pub const SHIP: &str = ship::ID;
    pub const SHIP_MAX_BYTES: usize = ship::MAX_BYTES;
    pub const MAX_PARCELS: usize = ship::MAX_PARCELS;
    pub const SYNC: &str = sync::ID;
    pub const SYNC_MAX_REQUEST_BYTES: usize = sync::MAX_REQUEST_BYTES;
    pub const SYNC_MAX_RESPONSE_BYTES: usize = sync::MAX_RESPONSE_BYTES;
    pub const SYNC_MAX_EVENTS: usize = sync::MAX_EVENTS;
    pub const SYNC_MAX_SCAN: usize = sync::MAX_SCAN;
}
