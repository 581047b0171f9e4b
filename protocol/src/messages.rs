//! Version 1 of every message printmesh nodes exchange.
//!
//! Request–response protocols (one request, one answer, point to point) each have a
//! versioned protocol id and their own size caps. Order events travel over gossipsub.
//! Blobs travel over a raw stream protocol whose control frames are defined here too.
//!
//! Enum variants are append-only: never reorder or remove one, the variant index is on
//! the wire.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::card::CardData;
use crate::ids::{AuthCode, BlobId, OrderId, StoreId};
use crate::money::Money;
use crate::pinblock::EncryptedPinBlock;
use crate::pricing::{Fit, PrintSize};
use crate::seal::SealedCard;

/// Protocol ids and their size caps, in one place.
pub mod proto {
    /// Node introduction: role, name, network.
    pub const HELLO: &str = "/printmesh/hello/2";
    /// Room for a certificate and [`MAX_HELLO_REVOCATIONS`] revocations.
    pub const HELLO_MAX_BYTES: usize = 96 * 1024;
    /// Most revocations one hello passes on (the newest).
    pub const MAX_HELLO_REVOCATIONS: usize = 256;
    /// Kiosk → intermediary: order submission.
    pub const ORDER: &str = "/printmesh/order/1";
    pub const ORDER_MAX_REQUEST_BYTES: usize = 256 * 1024;
    pub const ORDER_MAX_RESPONSE_BYTES: usize = 16 * 1024;
    /// Intermediary → acquirer: authorise, capture, void.
    pub const AUTH: &str = "/printmesh/auth/1";
    pub const AUTH_MAX_BYTES: usize = 16 * 1024;
    /// Intermediary → lab: print jobs.
    pub const PRINT: &str = "/printmesh/print/1";
    pub const PRINT_MAX_REQUEST_BYTES: usize = 256 * 1024;
    pub const PRINT_MAX_RESPONSE_BYTES: usize = 16 * 1024;
    /// Blob push over a raw stream.
    pub const BLOB: &str = "/printmesh/blob/1";
    pub const BLOB_CONTROL_MAX_BYTES: usize = 1024;
    /// Largest blob a node accepts (a camera JPEG is 3-20 MB).
    pub const BLOB_MAX_BYTES: u64 = 64 * 1024 * 1024;
    /// Gossipsub topic for order events.
    pub const EVENTS_TOPIC: &str = "printmesh/order-events/2";
    /// Gossipsub topic for the root's revocations (`membership::SignedRevocation`).
    pub const REVOCATIONS_TOPIC: &str = "printmesh/revocations/1";
    pub const EVENT_MAX_BYTES: usize = 16 * 1024;
    /// Most lines in one order.
    pub const MAX_ORDER_LINES: usize = 500;
    /// Settlement between acquirer, intermediary and labs.
    pub const SETTLE: &str = "/printmesh/settle/1";
    pub const SETTLE_MAX_BYTES: usize = 512 * 1024;
    /// Most orders in one settlement message.
    pub const MAX_SETTLE_LINES: usize = 10_000;
    /// Lab → courier: a shipment's manifest at hand-over.
    pub const SHIP: &str = "/printmesh/ship/1";
    pub const SHIP_MAX_BYTES: usize = 256 * 1024;
    /// Most parcels in one shipment.
    pub const MAX_PARCELS: usize = 2_000;
    /// Anti-entropy: a node asks a peer for the order events it took in after a point
    /// in its log (a node that was away, or missed a gossip, catches up).
    pub const SYNC: &str = "/printmesh/sync/1";
    pub const SYNC_MAX_REQUEST_BYTES: usize = 1024;
    /// Room for [`SYNC_MAX_EVENTS`] frames of a usual size, or a few of the largest
    /// ([`EVENT_MAX_BYTES`] each); the answering node stops adding frames before it.
    pub const SYNC_MAX_RESPONSE_BYTES: usize = 512 * 1024;
    /// Most event frames in one sync answer.
    pub const SYNC_MAX_EVENTS: usize = 256;
    /// Most stored events one sync answer looks through (a kiosk's answer passes over
    /// other stores' orders), so an answer costs the same however the log is made up.
    pub const SYNC_MAX_SCAN: usize = 2048;
}

/// The acquirer's token for a card: its keyed hash of the PAN, cut to 16 bytes. It
/// stands for the card everywhere outside the acquirer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CardToken(pub [u8; 16]);

impl std::fmt::Display for CardToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for CardToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardToken({self})")
    }
}

/// The roles a node can play (DESIGN.md, "The peers").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Kiosk,
    Intermediary,
    Acquirer,
    Lab,
    Courier,
    Content,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Kiosk => "kiosk",
            Role::Intermediary => "intermediary",
            Role::Acquirer => "acquirer",
            Role::Lab => "lab",
            Role::Courier => "courier",
            Role::Content => "content",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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

// ---------------------------------------------------------------- orders (kiosk → intermediary)

/// How the customer pays (patent S505).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaymentMethod {
    Credit,
    Debit,
    PointCard,
    IcCard,
}

/// One photo in an order: which blob, at what size, how many.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub blob: BlobId,
    /// Blob length in bytes, so the receiver knows what to expect.
    pub blob_len: u64,
    /// The file name on the memory card (`PMSH0001.JPG`), for the back print.
    pub file_name: String,
    pub size: PrintSize,
    pub quantity: u16,
    /// Crop to fill the paper, or the whole photo with a white border.
    pub fit: Fit,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOrder {
    pub order_id: OrderId,
    pub store: StoreId,
    pub placed_at_ms: i64,
    pub lines: Vec<OrderLine>,
    /// The total the customer was shown; the intermediary recomputes it.
    pub total: Money,
    pub method: PaymentMethod,
    pub card: CardData,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderRequest {
    Submit(SubmitOrder),
    /// A submission whose cardholder entered a PIN on the kiosk's PIN pad. The block
    /// is format 4, encrypted at the PIN pad; the intermediary passes it on untouched.
    SubmitWithPin {
        order: SubmitOrder,
        pin_block: EncryptedPinBlock,
    },
    /// The card (and PIN) sealed to the acquirer's key. The only form accepted since
    /// sealing arrived; the unsealed forms above are refused.
    SubmitSealed(SealedOrder),
}

impl OrderRequest {
    pub fn order_id(&self) -> OrderId {
        match self {
            OrderRequest::Submit(order) | OrderRequest::SubmitWithPin { order, .. } => {
                order.order_id
            }
            OrderRequest::SubmitSealed(order) => order.order_id,
        }
    }
}

/// An order whose card data is sealed to the acquirer: what kiosks send. The
/// intermediary sees the card's brand, last four digits and entry mode, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedOrder {
    pub order_id: OrderId,
    pub store: StoreId,
    pub placed_at_ms: i64,
    pub lines: Vec<OrderLine>,
    /// The total the customer was shown; the intermediary recomputes it. The sealed
    /// card is bound to it.
    pub total: Money,
    pub method: PaymentMethod,
    pub card: SealedCard,
}

/// An approved, accepted order: what the kiosk prints on the receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAccepted {
    pub order_id: OrderId,
    pub auth_code: AuthCode,
    pub amount: Money,
    pub delivery_date: NaiveDate,
    pub lab: String,
}

/// ISO 8583 response codes a decline can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeclineCode {
    /// 05
    DoNotHonour,
    /// 13
    InvalidAmount,
    /// 14
    InvalidCardNumber,
    /// 51
    InsufficientFunds,
    /// 54
    ExpiredCard,
    /// 57
    NotPermitted,
    /// 62
    RestrictedCard,
    /// 55
    IncorrectPin,
    /// 75
    PinTriesExceeded,
    /// 30: the sealed card data does not open for this order.
    FormatError,
}

impl DeclineCode {
    /// The two-digit ISO 8583 field 39 code.
    pub fn iso8583(self) -> &'static str {
        match self {
            DeclineCode::DoNotHonour => "05",
            DeclineCode::InvalidAmount => "13",
            DeclineCode::InvalidCardNumber => "14",
            DeclineCode::InsufficientFunds => "51",
            DeclineCode::ExpiredCard => "54",
            DeclineCode::NotPermitted => "57",
            DeclineCode::RestrictedCard => "62",
            DeclineCode::IncorrectPin => "55",
            DeclineCode::PinTriesExceeded => "75",
            DeclineCode::FormatError => "30",
        }
    }

    /// Plain words for the customer.
    pub fn describe(self) -> &'static str {
        match self {
            DeclineCode::DoNotHonour => "the card issuer declined the payment",
            DeclineCode::InvalidAmount => "the amount cannot be charged to this card",
            DeclineCode::InvalidCardNumber => "the card number is not recognised",
            DeclineCode::InsufficientFunds => "the card's limit does not cover this amount",
            DeclineCode::ExpiredCard => "the card has expired",
            DeclineCode::NotPermitted => "this card cannot be used for this payment",
            DeclineCode::RestrictedCard => "the card is blocked",
            DeclineCode::IncorrectPin => "the PIN was not correct",
            DeclineCode::PinTriesExceeded => {
                "the PIN was wrong too many times; the card is blocked"
            }
            DeclineCode::FormatError => "the card data could not be read by the card issuer",
        }
    }
}

impl std::fmt::Display for DeclineCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.iso8583(), self.describe())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderResponse {
    /// Final: paid and promised.
    Accepted(OrderAccepted),
    /// Final: the card was declined; nothing is held.
    Declined {
        order_id: OrderId,
        code: DeclineCode,
    },
    /// Final: the order cannot be made (bad total, no lab could take it); any hold was
    /// released.
    Rejected { order_id: OrderId, reason: String },
    /// Not final: upload these blobs, then submit again.
    MissingBlobs {
        order_id: OrderId,
        blobs: Vec<BlobId>,
    },
    /// Not final: a party behind the intermediary is unreachable; submit again later.
    Unavailable { order_id: OrderId, reason: String },
}

impl OrderResponse {
    pub fn order_id(&self) -> OrderId {
        match self {
            OrderResponse::Accepted(a) => a.order_id,
            OrderResponse::Declined { order_id, .. }
            | OrderResponse::Rejected { order_id, .. }
            | OrderResponse::MissingBlobs { order_id, .. }
            | OrderResponse::Unavailable { order_id, .. } => *order_id,
        }
    }

    /// A final answer ends the kiosk's retries.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OrderResponse::Accepted(_)
                | OrderResponse::Declined { .. }
                | OrderResponse::Rejected { .. }
        )
    }
}

// ---------------------------------------------------------------- auth (intermediary → acquirer)

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorise {
    pub order_id: OrderId,
    pub amount: Money,
    pub method: PaymentMethod,
    pub card: CardData,
    /// The store the sale happened at (merchant location).
    pub store: StoreId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthRequest {
    /// Place a hold for the amount.
    Authorise(Authorise),
    /// Post the hold (the lab shipped).
    Capture { order_id: OrderId },
    /// Release the hold (job rejected, order cancelled).
    Void { order_id: OrderId },
    /// [`AuthRequest::Authorise`] with the PIN block the cardholder entered.
    AuthoriseWithPin {
        auth: Authorise,
        pin_block: EncryptedPinBlock,
    },
    /// The card (and PIN) sealed to the acquirer by the kiosk, passed on untouched.
    AuthoriseSealed(SealedAuthorise),
}

/// An authorisation request whose card data only the acquirer can open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedAuthorise {
    pub order_id: OrderId,
    pub amount: Money,
    pub method: PaymentMethod,
    pub store: StoreId,
    pub card: SealedCard,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthResponse {
    Approved {
        order_id: OrderId,
        auth_code: AuthCode,
        amount: Money,
    },
    Declined {
        order_id: OrderId,
        code: DeclineCode,
    },
    Captured {
        order_id: OrderId,
    },
    Voided {
        order_id: OrderId,
    },
    /// The request could not be carried out (no such hold, already voided, …).
    Refused {
        order_id: OrderId,
        reason: String,
    },
    /// Approved, with the token that stands for the card outside the acquirer.
    ApprovedCard {
        order_id: OrderId,
        auth_code: AuthCode,
        amount: Money,
        token: CardToken,
    },
    /// Declined; the token when the card is known.
    DeclinedCard {
        order_id: OrderId,
        code: DeclineCode,
        token: Option<CardToken>,
    },
    /// The card data is sealed to another acquirer's key: ask another acquirer.
    NotMine {
        order_id: OrderId,
    },
    /// A capture or void that can never succeed: there is no such hold, it belongs to
    /// another intermediary, or it was declined, already settled the other way, or has
    /// expired. Asking again is pointless (unlike `Refused`, which may pass).
    HoldClosed {
        order_id: OrderId,
        reason: String,
    },
}

// ---------------------------------------------------------------- settlement

/// A settlement batch: the acquirer's closing date and its number that day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BatchId {
    pub date: NaiveDate,
    pub seq: u32,
}

impl std::fmt::Display for BatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:03}", self.date, self.seq)
    }
}

/// One order in a bill or a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleLine {
    pub order_id: OrderId,
    pub amount: Money,
}

/// Patent [0064]-[0065]: the intermediary bills the acquirer for captured orders, the
/// acquirer pays it, and the intermediary pays each lab its print fees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettleRequest {
    /// Acquirer → intermediary: send the bill of captured orders not yet paid.
    BillPlease { batch: BatchId },
    /// Acquirer → intermediary: these orders of the bill are paid.
    Payment {
        batch: BatchId,
        lines: Vec<SettleLine>,
        total: Money,
    },
    /// Intermediary → lab: the lab's print fees for these orders are paid.
    LabPayment {
        batch: BatchId,
        lines: Vec<SettleLine>,
        total: Money,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettleResponse {
    Bill {
        batch: BatchId,
        lines: Vec<SettleLine>,
        total: Money,
    },
    Received {
        batch: BatchId,
        total: Money,
    },
    Refused {
        batch: BatchId,
        reason: String,
    },
}

// ---------------------------------------------------------------- print jobs (intermediary → lab)

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintJob {
    pub order_id: OrderId,
    pub store: StoreId,
    pub lines: Vec<OrderLine>,
    pub submitted_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrintRequest {
    Job(PrintJob),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrintResponse {
    Accepted {
        order_id: OrderId,
        delivery_date: NaiveDate,
        lab: String,
    },
    Rejected {
        order_id: OrderId,
        reason: String,
    },
    MissingBlobs {
        order_id: OrderId,
        blobs: Vec<BlobId>,
    },
}

// ---------------------------------------------------------------- shipments (lab → courier)

/// One order's prints, packed for one store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    pub order_id: OrderId,
    pub store: StoreId,
    pub prints: u32,
    /// The delivery date the lab promised.
    pub delivery_date: NaiveDate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipRequest {
    /// The lab hands these parcels to the courier.
    Manifest {
        /// The lab's id for the hand-over (idempotent: sent again, answered again).
        shipment: String,
        lab: String,
        parcels: Vec<Parcel>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipResponse {
    /// The courier has the parcels; they are on its manifest.
    PickedUp {
        shipment: String,
        parcels: u32,
    },
    Refused {
        shipment: String,
        reason: String,
    },
}

// ---------------------------------------------------------------- blob stream control frames

/// First frame on a blob stream, from the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobOffer {
    pub blob: BlobId,
    pub len: u64,
}

/// The receiver's answer to an offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobReply {
    /// Send the bytes from `offset` to the end. `offset == len` means "I have it".
    SendFrom {
        offset: u64,
    },
    /// Another transfer of the same blob is in progress; try again later.
    Busy,
    Refused {
        reason: String,
    },
}

/// The receiver's verdict once the bytes are in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobVerdict {
    Stored,
    HashMismatch,
    Failed { reason: String },
}

// ---------------------------------------------------------------- order events (gossip)

/// What happened to an order. The state machine in [`crate::order`] gives them meaning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Submitted {
        store: StoreId,
        total: Money,
    },
    Authorised {
        auth_code: AuthCode,
    },
    Declined {
        code: DeclineCode,
    },
    Accepted {
        delivery_date: NaiveDate,
        lab: String,
    },
    Rejected {
        reason: String,
    },
    Printed,
    Shipped,
    Delivered,
    Collected,
    Voided,
    Expired,
    /// The lab cannot keep its promised date: the prints reach the store on this one.
    Rescheduled {
        delivery_date: NaiveDate,
        reason: String,
    },
    /// Where the courier has the parcel (delivery itself is [`EventKind::Delivered`]).
    Tracking {
        stage: TrackingStage,
        courier: String,
    },
}

/// A courier's tracking stages before delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackingStage {
    PickedUp,
    InTransit,
}

/// An order event as its origin numbered it. Carries no card data, no image bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// The emitting node's PeerId bytes.
    pub origin: Vec<u8>,
    /// Per-origin sequence number, from 1.
    pub seq: u64,
    pub order_id: OrderId,
    pub at_ms: i64,
    pub kind: EventKind,
}

/// An encoded [`OrderEvent`] signed by its origin's identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvent {
    /// The codec's encoding of the [`OrderEvent`].
    pub event: Vec<u8>,
    /// The origin's public key (libp2p protobuf encoding).
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    /// In an enrolled network, the origin's membership certificate (an encoded
    /// `membership::SignedCertificate`): every node checks the origin may emit this
    /// kind of event, however many hops away it is.
    pub certificate: Option<Vec<u8>>,
}

// ---------------------------------------------------------------- anti-entropy (sync)

/// What a node asks a peer that may have events it missed: the events the peer stored
/// after `after` in its own log. Each node numbers the events it stores, from 1, in the
/// order it stores them; `log` names that numbering (it is drawn anew with a new
/// database), so a cursor into a log that is gone is not used on its successor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    Since { log: u64, after: u64 },
}

/// A page of a peer's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// `frames` are encoded [`SignedEvent`]s, as gossiped, oldest first; the asker
    /// checks each as it checks gossip. Ask from `next` in `log` next time; `more`
    /// says there is more to read now. A `log` other than the one asked about means
    /// the page starts at the beginning of the peer's log.
    Events {
        log: u64,
        frames: Vec<Vec<u8>>,
        next: u64,
        more: bool,
    },
    /// The peer cannot read its log now; ask again later.
    Unavailable { reason: String },
}

impl EventKind {
    /// The role whose nodes emit this kind of event.
    pub fn emitted_by(&self) -> Role {
        match self {
            EventKind::Submitted { .. } => Role::Intermediary,
            EventKind::Authorised { .. }
            | EventKind::Declined { .. }
            | EventKind::Voided
            | EventKind::Expired => Role::Acquirer,
            EventKind::Accepted { .. }
            | EventKind::Rejected { .. }
            | EventKind::Printed
            | EventKind::Shipped
            | EventKind::Rescheduled { .. } => Role::Lab,
            EventKind::Tracking { .. } | EventKind::Delivered => Role::Courier,
            EventKind::Collected => Role::Kiosk,
        }
    }
}
