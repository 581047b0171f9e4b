//! `printmesh inspect --config FILE`: what a stopped node holds, as JSON. Card data is
//! shown as brand and last four digits only.

use crate::blobs::BlobStore;
use crate::config::NodeConfig;
use crate::node::NodeError;
use crate::roles;
use crate::store::Db;
use printmesh_protocol::messages::Role;

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
        Role::Kiosk => roles::kiosk::inspect(&db)?,
        Role::Intermediary => roles::intermediary::inspect(&db)?,
        Role::Acquirer => roles::acquirer::inspect(&db)?,
        Role::Lab => {
            let blobs = BlobStore::open(&config.data_dir.join("blobs")).map_err(|source| {
                NodeError::DataDir {
                    path: config.data_dir.display().to_string(),
                    source,
                }
            })?;
            roles::lab::inspect(&db, &blobs)?
        }
        Role::Courier => roles::courier::inspect(&db)?,
        other => {
            return Err(NodeError::Role(format!(
                "role {other} has nothing to inspect yet"
            )))
        }
    };
    let events: crate::store::Tree<printmesh_protocol::messages::OrderEvent> = db.tree("events")?;
    if let Some(map) = value.as_object_mut() {
        map.insert("name".into(), config.name.clone().into());
        map.insert("events".into(), events.len().into());
    }
    Ok(value)
}
