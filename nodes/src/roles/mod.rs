//! The roles. Each implements [`crate::role::Role`] and owns its sled trees, in a
//! folder (or file) of its own; no role imports another. This is the one place that
//! matches on the role: starting the role a config names.

pub mod acquirer;
pub mod content;
pub mod courier;
pub mod intermediary;
pub mod kiosk;
pub mod lab;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use printmesh_protocol::messages::Role;
use printmesh_protocol::OrderId;
use printmesh_runtime::node::{shutdown_signal, AdminRequest, Node, NodeError};
use printmesh_runtime::role::run;
use printmesh_runtime::store::{Db, StoreError};

use crate::config::NodeConfig;
use crate::report::Report;

/// Who is paid by an intermediary at settlement (`SettleRequest::LabPayment`).
pub struct Payee {
    /// "the lab", "the content company": who could not record it.
    pub the: &'static str,
    /// "a lab", "a content company": who is paid nothing else.
    pub a: &'static str,
    /// "print fees", "download sales": what it is paid.
    pub paid: &'static str,
}

/// A payee's answer to a payment: only a connected intermediary pays; `record` stores
/// each order's part once (a payment sent again is counted as before and changes
/// nothing) and returns what the payment pays in all, which is the answer.
pub async fn answer_payment<F, Fut>(
    client: &crate::net::Client,
    inbound: crate::net::Inbound<crate::net::SettleProto>,
    payee: Payee,
    record: F,
) where
    F: FnOnce(
        libp2p::PeerId,
        printmesh_protocol::messages::BatchId,
        Vec<printmesh_protocol::messages::SettleLine>,
        printmesh_protocol::money::Money,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<printmesh_protocol::money::Money, StoreError>>,
{
    use printmesh_protocol::messages::{SettleRequest, SettleResponse};
    let (peer, request, responder) = inbound.into_parts();
    let from_intermediary = client
        .peers_with_role(Role::Intermediary)
        .await
        .iter()
        .any(|p| p.peer == peer);
    let response = match request {
        SettleRequest::LabPayment {
            batch,
            lines,
            total,
        } if from_intermediary => match record(peer, batch, lines, total).await {
            Ok(received) => {
                tracing::info!(%batch, %total, %received, "{} received", payee.paid);
                SettleResponse::Received {
                    batch,
                    total: received,
                }
            }
            Err(e) => {
                tracing::error!(%batch, "cannot record the payment: {e}");
                SettleResponse::Refused {
                    batch,
                    reason: format!("{} could not record the payment; send it again", payee.the),
                }
            }
        },
        SettleRequest::BillPlease { batch }
        | SettleRequest::Payment { batch, .. }
        | SettleRequest::LabPayment { batch, .. } => SettleResponse::Refused {
            batch,
            reason: format!(
                "{} is paid its {} by an intermediary, nothing else",
                payee.a, payee.paid
            ),
        },
    };
    responder.respond(response);
}

/// One async lock per order id, so concurrent duplicates of a request run one after
/// the other and the second sees the first's answer. Entries are dropped when no
/// request holds them.
#[derive(Default)]
pub struct OrderLocks {
    locks: Mutex<HashMap<OrderId, Arc<tokio::sync::Mutex<()>>>>,
}

impl OrderLocks {
    pub async fn lock(&self, id: OrderId) -> OrderGuard<'_> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(id).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        OrderGuard {
            locks: self,
            id,
            _guard: Some(guard),
        }
    }
}

pub struct OrderGuard<'a> {
    locks: &'a OrderLocks,
    id: OrderId,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for OrderGuard<'_> {
    fn drop(&mut self) {
        self._guard.take();
        let mut map = self.locks.locks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = map.get(&self.id) {
            // Only the map holds it: nobody is waiting.
            if Arc::strong_count(lock) == 1 {
                map.remove(&self.id);
            }
        }
    }
}

/// The config's section for its role, or the error naming it.
fn section<T>(section: Option<T>, role: Role) -> Result<T, NodeError> {
    section.ok_or_else(|| NodeError::Role(format!("no [{role}] section")))
}

/// Starts the role a config names. Returns the node once its role is serving.
pub async fn start_role(config: NodeConfig) -> Result<Node, NodeError> {
    let role = config.role;
    let common = config.common();
    let node = match role {
        Role::Acquirer => {
            run::<acquirer::Acquirer>(common, section(config.acquirer, role)?)
                .await?
                .0
        }
        Role::Intermediary => {
            run::<intermediary::Intermediary>(common, section(config.intermediary, role)?)
                .await?
                .0
        }
        Role::Lab => run::<lab::Lab>(common, section(config.lab, role)?).await?.0,
        Role::Courier => {
            run::<courier::Courier>(common, section(config.courier, role)?)
                .await?
                .0
        }
        Role::Kiosk => {
            run::<kiosk::Kiosk>(common, section(config.kiosk, role)?)
                .await?
                .0
        }
        Role::Content => {
            run::<content::Content>(common, section(config.content, role)?)
                .await?
                .0
        }
    };
    Ok(node)
}

/// `printmesh <role> --config FILE`: runs one node until SIGTERM or Ctrl-C, printing
/// one `listening <multiaddr>` line per address on stdout; then stops it (no new work,
/// the requests in hand finished, the role's loops ended, the database flushed).
pub async fn run_until_signal(config: NodeConfig) -> Result<(), NodeError> {
    let role = config.role;
    let name = config.name.clone();
    let node = start_role(config).await?;
    for addr in node.addresses().await {
        println!("listening {addr}");
    }
    println!("ready {role} {name} {}", node.peer_id());
    shutdown_signal().await;
    tracing::info!("stopping");
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts a kiosk node and returns its order API too.
pub async fn start_kiosk(config: NodeConfig) -> Result<(Node, Arc<kiosk::Kiosk>), NodeError> {
    if config.role != Role::Kiosk {
        return Err(NodeError::Role(format!(
            "config is for a {}, not a kiosk",
            config.role
        )));
    }
    let common = config.common();
    run::<kiosk::Kiosk>(common, section(config.kiosk, Role::Kiosk)?).await
}

/// The admin request for a day's settlement report of a role that keeps one.
pub fn report_request(role: Role, date: NaiveDate, csv: bool) -> Option<AdminRequest> {
    match role {
        Role::Acquirer => Some(AdminRequest::role(&acquirer::AcquirerCommand::Report {
            date,
            csv,
        })),
        Role::Intermediary => Some(AdminRequest::role(
            &intermediary::IntermediaryCommand::Report { date, csv },
        )),
        Role::Lab => Some(AdminRequest::role(&lab::LabCommand::Report { date, csv })),
        Role::Content => Some(AdminRequest::role(&content::ContentCommand::Report {
            date,
            csv,
        })),
        Role::Kiosk | Role::Courier => None,
    }
}

/// A day's settlement report read from a stopped node's database (`None`: the role
/// keeps none).
pub fn report_from_db(role: Role, db: &Db, date: NaiveDate) -> Result<Option<Report>, StoreError> {
    Ok(match role {
        Role::Acquirer => Some(acquirer::report(db, date)?),
        Role::Intermediary => Some(intermediary::report(db, date)?),
        Role::Lab => Some(lab::report(db, date)?),
        Role::Content => Some(content::report(db, date)?),
        Role::Kiosk | Role::Courier => None,
    })
}

/// `printmesh inspect --config FILE`: what a stopped node holds, as JSON. Card data is
/// shown as brand and last four digits only.
pub fn inspect(config: &NodeConfig) -> Result<serde_json::Value, NodeError> {
    let db_path = config.data_dir.join("db");
    if !db_path.exists() {
        return Err(NodeError::Role(format!(
            "no node state in {}",
            config.data_dir.display()
        )));
    }
    let db = Db::open(&db_path).map_err(|e| {
        NodeError::Role(format!(
            "cannot open {} ({e}); is the node still running?",
            db_path.display()
        ))
    })?;
    let mut value = match config.role {
        Role::Kiosk => kiosk::inspect(&db)?,
        Role::Intermediary => intermediary::inspect(&db)?,
        Role::Acquirer => acquirer::inspect(&db)?,
        Role::Lab => {
            let blobs = printmesh_runtime::blobs::BlobStore::open(&config.data_dir.join("blobs"))
                .map_err(|source| NodeError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            })?;
            lab::inspect(&db, &blobs)?
        }
        Role::Courier => courier::inspect(&db)?,
        Role::Content => content::inspect(&db)?,
    };
    let events: printmesh_runtime::store::Tree<printmesh_protocol::messages::OrderEvent> =
        db.tree("events")?;
    if let Some(map) = value.as_object_mut() {
        map.insert("name".into(), config.name.clone().into());
        map.insert("events".into(), events.len().into());
    }
    Ok(value)
}
