//! The intermediary (patent 102/402), first version: takes orders from kiosks, checks
//! them against its price list, has an acquirer authorise the card, sends the job and
//! its images to a lab, and answers the kiosk with the lab's delivery date and the
//! authorisation code.
//!
//! Idempotent per order id: progress is recorded in sled after each step, so a
//! resubmitted order (a retry after a lost answer, or through another path) continues
//! where the first stopped and, once answered, gets the first answer, never a second
//! hold.

use std::sync::Arc;

use libp2p::PeerId;
use printmesh_protocol::card::CardBrand;
use printmesh_protocol::messages::{
    proto, AuthRequest, AuthResponse, Authorise, EventKind, OrderAccepted, OrderLine, OrderRequest,
    OrderResponse, PaymentMethod, PrintJob, PrintRequest, PrintResponse, Role,
};
use printmesh_protocol::money::Money;
use printmesh_protocol::pricing::PriceList;
use printmesh_protocol::{AuthCode, OrderId, StoreId};
use serde::{Deserialize, Serialize};

use crate::blobs::send_blob;
use crate::config::load_prices;
use crate::net::{AuthProto, Inbound, NodeEvent, OrderProto, PrintProto};
use crate::node::{now_ms, Node, NodeError, RoleHandler};
use crate::roles::OrderLocks;
use crate::store::{StoreError, Tree};

/// Where an order stands at the intermediary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    Received,
    /// Held at `acquirer`. `lab` is the lab chosen for the job, recorded before the
    /// job is sent, so a retry goes to the same lab and the order is printed once.
    Authorised {
        auth_code: AuthCode,
        acquirer: Vec<u8>,
        lab: Option<Vec<u8>>,
    },
    Answered(OrderResponse),
}

/// The intermediary's record of an order. No card data beyond the last four digits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedOrder {
    pub order_id: OrderId,
    pub store: StoreId,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub method: PaymentMethod,
    pub card_last4: String,
    pub card_brand: CardBrand,
    pub stage: Stage,
    pub received_at_ms: i64,
    pub updated_at_ms: i64,
}

pub struct Intermediary {
    node: Node,
    prices: PriceList,
    orders: Tree<RoutedOrder>,
    locks: OrderLocks,
}

impl Intermediary {
    pub fn open(node: Node) -> Result<Intermediary, NodeError> {
        let config = node
            .config
            .intermediary
            .clone()
            .ok_or_else(|| NodeError::Role("no [intermediary] section".into()))?;
        Ok(Intermediary {
            prices: load_prices(&config.prices)?,
            orders: node.db.tree("orders")?,
            node,
            locks: OrderLocks::default(),
        })
    }

    async fn save(&self, order: &mut RoutedOrder) -> Result<(), StoreError> {
        order.updated_at_ms = now_ms();
        self.orders.insert(order.order_id.to_bytes(), order)?;
        self.node.db.flush().await
    }

    async fn answer(
        &self,
        order: &mut RoutedOrder,
        response: OrderResponse,
    ) -> Result<OrderResponse, StoreError> {
        order.stage = Stage::Answered(response.clone());
        self.save(order).await?;
        Ok(response)
    }

    async fn emit(&self, order_id: OrderId, kind: EventKind) {
        self.node.emit(order_id, kind).await;
    }

    /// Handles one submission end to end.
    pub async fn submit(&self, request: OrderRequest) -> Result<OrderResponse, StoreError> {
        let pin_block = request.pin_block().cloned();
        let submit = match request {
            OrderRequest::Submit(order) | OrderRequest::SubmitWithPin { order, .. } => order,
        };
        let order_id = submit.order_id;
        let _guard = self.locks.lock(order_id).await;
        let existing = self.orders.get(order_id.to_bytes())?;
        if let Some(RoutedOrder {
            stage: Stage::Answered(answer),
            ..
        }) = &existing
        {
            tracing::info!(%order_id, "resubmitted order: returning the first answer");
            return Ok(answer.clone());
        }
        let unavailable = |reason: String| {
            tracing::warn!(%order_id, "cannot complete now: {reason}");
            Ok(OrderResponse::Unavailable { order_id, reason })
        };

        let mut order = match existing {
            Some(o) => o,
            None => {
                let mut order = RoutedOrder {
                    order_id,
                    store: submit.store.clone(),
                    lines: submit.lines.clone(),
                    total: submit.total,
                    method: submit.method,
                    card_last4: submit.card.pan.last4().to_string(),
                    card_brand: submit.card.pan.brand(),
                    stage: Stage::Received,
                    received_at_ms: now_ms(),
                    updated_at_ms: now_ms(),
                };
                if submit.lines.is_empty() || submit.lines.len() > proto::MAX_ORDER_LINES {
                    let reason = format!("an order needs 1 to {} photos", proto::MAX_ORDER_LINES);
                    return self
                        .answer(&mut order, OrderResponse::Rejected { order_id, reason })
                        .await;
                }
                match self
                    .prices
                    .total(submit.lines.iter().map(|l| (l.size, l.quantity)))
                {
                    Ok(total) if total == submit.total => {}
                    Ok(total) => {
                        let reason = format!(
                            "the total shown ({}) does not match the price list ({total})",
                            submit.total
                        );
                        return self
                            .answer(&mut order, OrderResponse::Rejected { order_id, reason })
                            .await;
                    }
                    Err(e) => {
                        let reason = format!("the order cannot be priced: {e}");
                        return self
                            .answer(&mut order, OrderResponse::Rejected { order_id, reason })
                            .await;
                    }
                }
                let missing = self.node.blobs.missing(submit.lines.iter().map(|l| l.blob));
                if !missing.is_empty() {
                    return Ok(OrderResponse::MissingBlobs {
                        order_id,
                        blobs: missing,
                    });
                }
                self.save(&mut order).await?;
                self.emit(
                    order_id,
                    EventKind::Submitted {
                        store: order.store.clone(),
                        total: order.total,
                    },
                )
                .await;
                order
            }
        };

        if order.stage == Stage::Received {
            let Some(acquirer) = self
                .node
                .client
                .peers_with_role(Role::Acquirer)
                .await
                .into_iter()
                .next()
            else {
                return unavailable("no acquirer is reachable".into());
            };
            let auth = Authorise {
                order_id,
                amount: order.total,
                method: order.method,
                card: submit.card.clone(),
                store: order.store.clone(),
            };
            // The PIN block goes on as it came: only the acquirer can open it.
            let request = match pin_block {
                Some(pin_block) => AuthRequest::AuthoriseWithPin { auth, pin_block },
                None => AuthRequest::Authorise(auth),
            };
            match self
                .node
                .client
                .request::<AuthProto>(acquirer.peer, request)
                .await
            {
                Ok(AuthResponse::Approved { auth_code, .. }) => {
                    order.stage = Stage::Authorised {
                        auth_code,
                        acquirer: acquirer.peer.to_bytes(),
                        lab: None,
                    };
                    self.save(&mut order).await?;
                }
                Ok(AuthResponse::Declined { code, .. }) => {
                    tracing::info!(%order_id, code = code.iso8583(), "declined");
                    return self
                        .answer(&mut order, OrderResponse::Declined { order_id, code })
                        .await;
                }
                Ok(other) => return unavailable(format!("the acquirer answered {other:?}")),
                Err(e) => return unavailable(e.to_string()),
            }
        }

        let Stage::Authorised {
            auth_code,
            acquirer,
            lab: chosen,
        } = order.stage.clone()
        else {
            return unavailable("order is in an unexpected stage".into());
        };
        let labs = self.node.client.peers_with_role(Role::Lab).await;
        let lab = match &chosen {
            // A retry: only the lab that may already have the job.
            Some(bytes) => match labs.into_iter().find(|l| l.peer.to_bytes() == *bytes) {
                Some(lab) => lab,
                None => return unavailable("the lab that has this job is not reachable".into()),
            },
            None => {
                let Some(lab) = labs.into_iter().next() else {
                    return unavailable("no lab is reachable".into());
                };
                order.stage = Stage::Authorised {
                    auth_code: auth_code.clone(),
                    acquirer: acquirer.clone(),
                    lab: Some(lab.peer.to_bytes()),
                };
                self.save(&mut order).await?;
                lab
            }
        };
        let mut control = self.node.client.stream_control();
        for line in &order.lines {
            if let Err(e) = send_blob(&mut control, &self.node.blobs, lab.peer, line.blob).await {
                return unavailable(format!("sending {} to the lab: {e}", line.file_name));
            }
        }
        let job = PrintRequest::Job(PrintJob {
            order_id,
            store: order.store.clone(),
            lines: order.lines.clone(),
            submitted_at_ms: now_ms(),
        });
        match self.node.client.request::<PrintProto>(lab.peer, job).await {
            Ok(PrintResponse::Accepted {
                delivery_date, lab, ..
            }) => {
                let accepted = OrderAccepted {
                    order_id,
                    auth_code,
                    amount: order.total,
                    delivery_date,
                    lab,
                };
                self.answer(&mut order, OrderResponse::Accepted(accepted))
                    .await
            }
            Ok(PrintResponse::Rejected { reason, .. }) => {
                // The answer is recorded first: a retry can then never send the job
                // again after its hold is released.
                let answer = self
                    .answer(&mut order, OrderResponse::Rejected { order_id, reason })
                    .await;
                self.void(order_id, &acquirer).await;
                answer
            }
            Ok(PrintResponse::MissingBlobs { .. }) => {
                unavailable("the lab lost the images; will resend".into())
            }
            Err(e) => unavailable(e.to_string()),
        }
    }

    /// Releases the hold of a job no lab could take.
    async fn void(&self, order_id: OrderId, acquirer: &[u8]) {
        let Ok(peer) = PeerId::from_bytes(acquirer) else {
            return;
        };
        match self
            .node
            .client
            .request::<AuthProto>(peer, AuthRequest::Void { order_id })
            .await
        {
            Ok(AuthResponse::Voided { .. }) => tracing::info!(%order_id, "hold voided"),
            Ok(other) => tracing::warn!(%order_id, "void answered {other:?}"),
            Err(e) => tracing::warn!(%order_id, "void not delivered: {e}"),
        }
    }

    async fn on_order(&self, inbound: Inbound<OrderProto>) {
        let (peer, request, responder) = inbound.into_parts();
        let order_id = request.order().order_id;
        match self.submit(request).await {
            Ok(r) => responder.respond(r),
            Err(e) => {
                tracing::error!(%peer, %order_id, "order failed: {e}");
                responder.respond(OrderResponse::Unavailable {
                    order_id,
                    reason: "the intermediary could not record the order; try again".into(),
                });
            }
        }
    }
}

impl RoleHandler for Intermediary {
    async fn handle(self: Arc<Self>, event: NodeEvent) {
        if let NodeEvent::Order(inbound) = event {
            self.on_order(inbound).await;
        }
    }
}

/// What `printmesh inspect` shows of an intermediary.
pub fn inspect(db: &crate::store::Db) -> Result<serde_json::Value, StoreError> {
    let orders: Tree<RoutedOrder> = db.tree("orders")?;
    let mut out = Vec::new();
    for entry in orders.entries() {
        let (_, o) = entry?;
        let stage = match &o.stage {
            Stage::Received => "received".to_string(),
            Stage::Authorised { .. } => "authorised".to_string(),
            Stage::Answered(r) => format!("answered: {}", summary(r)),
        };
        out.push(serde_json::json!({
            "order_id": o.order_id.to_string(), "store": o.store.to_string(), "total_minor": o.total.amount_minor(),
            "card_last4": o.card_last4, "stage": stage,
        }));
    }
    Ok(serde_json::json!({ "role": "intermediary", "orders": out }))
}

/// One-line description of an order answer.
pub fn summary(r: &OrderResponse) -> String {
    match r {
        OrderResponse::Accepted(a) => {
            format!("approved {} delivery {}", a.auth_code, a.delivery_date)
        }
        OrderResponse::Declined { code, .. } => format!("declined {code}"),
        OrderResponse::Rejected { reason, .. } => format!("rejected: {reason}"),
        OrderResponse::MissingBlobs { blobs, .. } => format!("missing {} images", blobs.len()),
        OrderResponse::Unavailable { reason, .. } => format!("unavailable: {reason}"),
    }
}
