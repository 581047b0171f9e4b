//! The courier (patent FIG. 4's delivery): takes shipments from labs, keeps a
//! manifest in sled (which order, for which store, where it is), and reports each
//! parcel's progress as order events: `Tracking` picked up and in transit, then
//! `Delivered` when it is at the store — which is what the kiosk's counter mode waits
//! for before it hands prints over.
//!
//! The driver reports with `printmesh courier --config F depart|deliver`; a courier
//! configured with `auto_in_transit_secs` / `auto_deliver_secs` moves parcels by
//! itself (the demo's van).

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use printmesh_protocol::messages::{
    proto, EventKind, Parcel, ShipRequest, ShipResponse, TrackingStage,
};
use printmesh_protocol::{OrderId, StoreId};
use serde::{Deserialize, Serialize};

use crate::config::CourierConfig;
use crate::net::{Inbound, ShipProto};
use crate::node::{now_ms, AdminResponse, Node, NodeError, RoleCommand};
use crate::store::{StoreError, Tree};
use printmesh_protocol::messages::Role;
use printmesh_runtime::role::{RoleEvent, Stopping};

/// Where a parcel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    PickedUp,
    InTransit,
    Delivered,
}

/// One line of the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub parcel: Parcel,
    pub shipment: String,
    /// The lab's name, and its peer id (the one that may hand it over again).
    pub lab: String,
    pub from: Vec<u8>,
    pub picked_up_ms: i64,
    pub in_transit_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    pub stage: Stage,
}

pub struct Courier {
    node: Node,
    config: CourierConfig,
    /// order id → its manifest entry.
    manifest: Tree<ManifestEntry>,
    lock: tokio::sync::Mutex<()>,
}

impl Courier {
    fn name(&self) -> String {
        self.node.config.name.clone()
    }

    /// The manifest, oldest pick-up first.
    pub fn entries(&self) -> Result<Vec<ManifestEntry>, StoreError> {
        let mut out = Vec::new();
        for e in self.manifest.entries() {
            out.push(e?.1);
        }
        out.sort_by_key(|e| (e.picked_up_ms, e.parcel.order_id));
        Ok(out)
    }

    async fn on_ship(&self, inbound: Inbound<ShipProto>) {
        let (peer, request, responder) = inbound.into_parts();
        let ShipRequest::Manifest {
            shipment,
            lab,
            parcels,
        } = request;
        if parcels.is_empty() || parcels.len() > proto::MAX_PARCELS {
            responder.respond(ShipResponse::Refused {
                shipment,
                reason: format!("a shipment has 1 to {} parcels", proto::MAX_PARCELS),
            });
            return;
        }
        let guard = self.lock.lock().await;
        let from = peer.to_bytes();
        let at = now_ms();
        let mut new = Vec::new();
        let mut batch = sled::Batch::default();
        for parcel in &parcels {
            let key = parcel.order_id.to_bytes();
            match self.manifest.get(key) {
                Ok(Some(existing)) => {
                    if existing.from != from {
                        tracing::warn!(order_id = %parcel.order_id, "a second lab hands over the same order: ignored");
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("cannot read the manifest: {e}");
                    return; // no answer: the lab tries again
                }
            }
            let entry = ManifestEntry {
                parcel: parcel.clone(),
                shipment: shipment.clone(),
                lab: lab.chars().take(80).collect(),
                from: from.clone(),
                picked_up_ms: at,
                in_transit_ms: None,
                delivered_ms: None,
                stage: Stage::PickedUp,
            };
            match self.manifest.encode(&entry) {
                Ok(bytes) => batch.insert(&key, bytes),
                Err(e) => {
                    tracing::error!("cannot write the manifest: {e}");
                    return;
                }
            }
            new.push(parcel.order_id);
        }
        let stored = match self.manifest.raw().apply_batch(batch) {
            Ok(()) => self.node.db.flush().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        drop(guard);
        if let Err(e) = stored {
            tracing::error!("cannot store the manifest: {e}");
            return;
        }
        tracing::info!(%shipment, %lab, parcels = parcels.len(), "picked up");
        responder.respond(ShipResponse::PickedUp {
            shipment,
            parcels: u32::try_from(parcels.len()).unwrap_or(u32::MAX),
        });
        for order_id in new {
            self.node
                .emit(
                    order_id,
                    EventKind::Tracking {
                        stage: TrackingStage::PickedUp,
                        courier: self.name(),
                    },
                )
                .await;
        }
    }

    /// Moves the parcels `pick` chooses from `from` to `to`, durably, then reports
    /// each. Returns the orders moved.
    async fn advance(
        &self,
        from: &[Stage],
        to: Stage,
        pick: impl Fn(&ManifestEntry) -> bool,
    ) -> Result<Vec<OrderId>, String> {
        let guard = self.lock.lock().await;
        let at = now_ms();
        let mut moved = Vec::new();
        let mut batch = sled::Batch::default();
        for mut e in self.entries().map_err(|e| e.to_string())? {
            if !from.contains(&e.stage) || !pick(&e) {
                continue;
            }
            e.stage = to;
            match to {
                Stage::InTransit => e.in_transit_ms = Some(at),
                Stage::Delivered => e.delivered_ms = Some(at),
                Stage::PickedUp => {}
            }
            batch.insert(
                &e.parcel.order_id.to_bytes(),
                self.manifest.encode(&e).map_err(|e| e.to_string())?,
            );
            moved.push(e.parcel.order_id);
        }
        self.manifest
            .raw()
            .apply_batch(batch)
            .map_err(|e| e.to_string())?;
        self.node.db.flush().await.map_err(|e| e.to_string())?;
        drop(guard);
        for &order_id in &moved {
            let kind = match to {
                Stage::Delivered => EventKind::Delivered,
                Stage::InTransit => EventKind::Tracking {
                    stage: TrackingStage::InTransit,
                    courier: self.name(),
                },
                Stage::PickedUp => continue,
            };
            tracing::info!(%order_id, stage = ?to, "tracking");
            self.node.emit(order_id, kind).await;
        }
        Ok(moved)
    }

    /// Sends the tracking events the manifest implies that a crash kept from going
    /// out (the manifest is stored first): `PickedUp`, `InTransit`, `Delivered`.
    pub async fn resend_events(&self) -> usize {
        let horizon = now_ms().saturating_sub(printmesh_runtime::events::RESEND_WINDOW_MS);
        let mut sent = 0;
        for (_, e) in self.manifest.entries().filter_map(Result::ok) {
            if e.picked_up_ms < horizon {
                continue;
            }
            let id = e.parcel.order_id;
            let mut kinds = vec![EventKind::Tracking {
                stage: TrackingStage::PickedUp,
                courier: self.name(),
            }];
            if e.in_transit_ms.is_some() {
                kinds.push(EventKind::Tracking {
                    stage: TrackingStage::InTransit,
                    courier: self.name(),
                });
            }
            if e.stage == Stage::Delivered {
                kinds.push(EventKind::Delivered);
            }
            for kind in kinds {
                if self.node.ensure_emitted(id, kind).await {
                    sent += 1;
                }
            }
        }
        sent
    }

    pub async fn depart(&self, order_id: Option<OrderId>) -> Result<String, String> {
        let moved = self
            .advance(&[Stage::PickedUp], Stage::InTransit, |e| {
                order_id.is_none_or(|id| id == e.parcel.order_id)
            })
            .await?;
        describe(moved, "in transit", order_id)
    }

    pub async fn deliver(
        &self,
        order_id: Option<OrderId>,
        store: Option<StoreId>,
    ) -> Result<String, String> {
        let moved = self
            .advance(
                &[Stage::PickedUp, Stage::InTransit],
                Stage::Delivered,
                |e| {
                    order_id.is_none_or(|id| id == e.parcel.order_id)
                        && store.as_ref().is_none_or(|s| *s == e.parcel.store)
                },
            )
            .await?;
        if moved.is_empty() {
            // Delivering one already delivered announces it again: the store may have
            // missed the event (there is no resync of missed events yet).
            if let Some(id) = order_id {
                let done = self
                    .manifest
                    .get(id.to_bytes())
                    .map_err(|e| e.to_string())?
                    .is_some_and(|e| e.stage == Stage::Delivered);
                if done {
                    self.node.emit(id, EventKind::Delivered).await;
                    return Ok(format!("order {id} was delivered already; announced again"));
                }
            }
        }
        describe(moved, "delivered", order_id)
    }

    /// The van's own clock: parcels move once their time is up.
    pub async fn drive(&self, now: i64) {
        let after = |secs: Option<u64>, since: i64| {
            secs.is_some_and(|s| {
                now >= since
                    .saturating_add(i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000))
            })
        };
        let transit = self.config.auto_in_transit_secs;
        let deliver = self.config.auto_deliver_secs;
        if let Err(e) = self
            .advance(&[Stage::PickedUp], Stage::InTransit, |e| {
                after(transit, e.picked_up_ms) && !after(deliver, e.picked_up_ms)
            })
            .await
        {
            tracing::error!("courier: {e}");
        }
        if let Err(e) = self
            .advance(
                &[Stage::PickedUp, Stage::InTransit],
                Stage::Delivered,
                |e| after(deliver, e.picked_up_ms),
            )
            .await
        {
            tracing::error!("courier: {e}");
        }
    }

    fn manifest_text(&self) -> Result<String, String> {
        let entries = self.entries().map_err(|e| e.to_string())?;
        serde_json::to_string_pretty(
            &entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "order_id": e.parcel.order_id.to_string(),
                        "store": e.parcel.store.to_string(),
                        "prints": e.parcel.prints,
                        "promised": e.parcel.delivery_date.to_string(),
                        "shipment": e.shipment,
                        "lab": e.lab,
                        "stage": format!("{:?}", e.stage),
                    })
                })
                .collect::<Vec<_>>(),
        )
        .map_err(|e| e.to_string())
    }
}

fn describe(moved: Vec<OrderId>, what: &str, asked: Option<OrderId>) -> Result<String, String> {
    match (moved.len(), asked) {
        (0, Some(id)) => Err(format!(
            "order {id} is not on the manifest waiting for that"
        )),
        (0, None) => Ok(format!("no parcels to report {what}")),
        _ => Ok(moved
            .iter()
            .map(|id| format!("order {id} {what}"))
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

printmesh_runtime::requests! {
    /// What a courier answers: a lab's shipment.
    pub enum CourierRequest {
        Ship(ShipProto),
    }
}

impl printmesh_runtime::role::Role for Courier {
    const KIND: Role = Role::Courier;
    type Config = CourierConfig;
    type Command = CourierCommand;
    type Request = CourierRequest;

    fn open(node: Node, config: CourierConfig) -> Result<Arc<Courier>, NodeError> {
        Ok(Arc::new(Courier {
            manifest: node.db.tree("manifest")?,
            node,
            config,
            lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// Starts the van's own clock, if the config gives one, until the node stops.
    fn start(self: &Arc<Self>, mut stopping: Stopping) {
        let me = self.clone();
        tokio::spawn(async move { me.resend_events().await });
        if self.config.auto_in_transit_secs.is_none() && self.config.auto_deliver_secs.is_none() {
            return;
        }
        let courier = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => courier.drive(now_ms()).await,
                    _ = stopping.wait() => break,
                }
            }
        });
    }

    async fn handle(self: Arc<Self>, event: RoleEvent<Self>) {
        match event {
            RoleEvent::Request(CourierRequest::Ship(inbound)) => self.on_ship(inbound).await,
            RoleEvent::Admin(command, reply) => {
                let response = match command {
                    CourierCommand::Manifest => AdminResponse::from_result(self.manifest_text()),
                    CourierCommand::Depart { order_id } => {
                        AdminResponse::from_result(self.depart(order_id).await)
                    }
                    CourierCommand::Deliver { order_id, store } => {
                        AdminResponse::from_result(self.deliver(order_id, store).await)
                    }
                };
                let _ = reply.send(response);
            }
            // Its work comes by request and command; events and peers are not its.
            RoleEvent::Event(_) | RoleEvent::PeerReady(_) | RoleEvent::PeerGone(_) => {}
        }
    }
}

/// A courier's admin commands (`printmesh courier manifest|depart|deliver`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CourierCommand {
    /// The manifest (JSON).
    Manifest,
    /// Parcels leave the depot (one order, or every picked-up one).
    Depart { order_id: Option<OrderId> },
    /// Parcels handed to the store (one order, or every one for a store, or every one
    /// in transit).
    Deliver {
        order_id: Option<OrderId>,
        store: Option<StoreId>,
    },
}

impl RoleCommand for CourierCommand {
    const ROLE: Role = Role::Courier;
}

/// What `printmesh inspect` shows of a courier: its manifest.
pub fn inspect(db: &crate::store::Db) -> Result<serde_json::Value, StoreError> {
    let manifest: Tree<ManifestEntry> = db.tree("manifest")?;
    let mut out = Vec::new();
    for e in manifest.entries() {
        let (_, e) = e?;
        out.push(serde_json::json!({
            "order_id": e.parcel.order_id.to_string(),
            "store": e.parcel.store.to_string(),
            "prints": e.parcel.prints,
            "shipment": e.shipment,
            "lab": e.lab,
            "stage": format!("{:?}", e.stage),
        }));
    }
    Ok(serde_json::json!({ "role": "courier", "manifest": out }))
}
