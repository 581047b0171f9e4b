//! The content companies' catalogues a node holds (an intermediary, to check prices
//! and pass them on; a kiosk, to sell from): each checked before it is kept, the
//! newest version of each company's, in sled.
//!
//! A catalogue is kept only if its signature verifies, it is for this network, and (in
//! an enrolled network) its signer holds a valid, unrevoked content company's
//! certificate. Whoever passed it on cannot change it.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use printmesh_protocol::content::{verify_catalogue, SignedCatalogue, VerifiedCatalogue};
use printmesh_protocol::membership::Certificate;
use printmesh_protocol::messages::Role;
use printmesh_protocol::wire::content::{ContentRequest, ContentResponse, MAX_CATALOGUES};

use crate::membership::Gate;
use crate::net::{Client, ContentProto};
use crate::store::{Db, StoreError, Tree};

/// How often a holder asks its peers for newer catalogues.
pub const SYNC_EVERY: Duration = Duration::from_secs(20);

/// A catalogue held, and the certificate its signature was admitted with.
#[derive(Clone)]
struct Held {
    catalogue: VerifiedCatalogue,
    certificate: Option<Certificate>,
}

pub struct Catalogues {
    network: String,
    gate: Option<Gate>,
    /// signer PeerId bytes → its newest catalogue, as signed.
    tree: Tree<SignedCatalogue>,
    /// The same, checked, in memory, with the company's certificate as checked then
    /// (only its expiry and revocation are looked at again).
    checked: std::sync::RwLock<HashMap<Vec<u8>, Held>>,
    /// Refusals logged (each once; bounded).
    logged: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Held while a catalogue is compared with the one held and stored: a gossiped and
    /// an asked-for copy arriving together cannot put an older version back.
    offering: std::sync::Mutex<()>,
}

impl Catalogues {
    /// Opens the tree `catalogues`; what it holds is checked again (a revoked company's
    /// catalogue is not used).
    pub fn open(db: &Db, network: &str, gate: Option<Gate>) -> Result<Catalogues, StoreError> {
        let me = Catalogues {
            network: network.to_string(),
            gate,
            tree: db.tree("catalogues")?,
            checked: Default::default(),
            logged: Default::default(),
            offering: Default::default(),
        };
        let mut checked = HashMap::new();
        for entry in me.tree.entries() {
            let (key, signed) = entry?;
            match me.admit(&signed) {
                Ok(held) => {
                    checked.insert(key, held);
                }
                Err(e) => tracing::warn!("a stored catalogue is not used: {e}"),
            }
        }
        *me.checked.write().unwrap_or_else(|e| e.into_inner()) = checked;
        Ok(me)
    }

    /// Checks a signed catalogue (see the module's doc).
    pub fn check(&self, signed: &SignedCatalogue) -> Result<VerifiedCatalogue, String> {
        self.admit(signed).map(|held| held.catalogue)
    }

    fn admit(&self, signed: &SignedCatalogue) -> Result<Held, String> {
        let v = verify_catalogue(signed).map_err(|e| format!("a catalogue: {e}"))?;
        if v.catalogue.network != self.network {
            return Err(format!(
                "a catalogue of network {:?}, not this one",
                v.catalogue.network
            ));
        }
        let mut certificate = None;
        if let Some(gate) = &self.gate {
            let cert = gate
                .admit_signer(&v.signer, v.certificate.as_deref(), Role::Content)
                .map_err(|e| {
                    format!(
                        "catalogue of {:?} refused: not signed by an enrolled content company ({e})",
                        v.catalogue.company
                    )
                })?;
            if cert.name != v.catalogue.company {
                return Err(format!(
                    "a catalogue names its company {:?}, its certificate {:?}",
                    v.catalogue.company, cert.name
                ));
            }
            certificate = Some(cert);
        }
        Ok(Held {
            catalogue: v,
            certificate,
        })
    }

    /// Whether a held catalogue's company still counts: its certificate unexpired and
    /// unrevoked (its signature was checked when the catalogue was taken).
    fn still_good(&self, signer: &[u8], held: &Held) -> bool {
        match (&self.gate, &held.certificate) {
            (None, _) => true,
            (Some(gate), Some(cert)) => {
                PeerId::from_bytes(signer).is_ok_and(|peer| gate.check(cert, peer).is_ok())
            }
            (Some(_), None) => false,
        }
    }

    /// Keeps a catalogue if it checks and is newer than the one held of its company.
    /// Returns its version if it was kept.
    pub fn offer(&self, signed: SignedCatalogue) -> Result<Option<u64>, String> {
        let held = self.admit(&signed)?;
        let v = &held.catalogue;
        let _one_at_a_time = self.offering.lock().unwrap_or_else(|e| e.into_inner());
        if self
            .version_of(&v.signer)
            .is_some_and(|h| h >= v.catalogue.version)
        {
            return Ok(None);
        }
        self.tree
            .insert(&v.signer, &signed)
            .map_err(|e| e.to_string())?;
        let version = v.catalogue.version;
        tracing::info!(company = %v.catalogue.company, version, items = v.catalogue.items.len(), "catalogue kept");
        let signer = v.signer.clone();
        self.checked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(signer, held);
        Ok(Some(version))
    }

    pub fn version_of(&self, signer: &[u8]) -> Option<u64> {
        self.checked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(signer)
            .map(|h| h.catalogue.catalogue.version)
    }

    /// (signer, version) of every catalogue held: what a sync request names.
    pub fn known(&self) -> Vec<(Vec<u8>, u64)> {
        let mut out: Vec<_> = self
            .checked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, h)| (k.clone(), h.catalogue.catalogue.version))
            .collect();
        out.sort();
        out
    }

    /// Every catalogue held, checked (a company's certificate that lapsed since is
    /// left out).
    pub fn all(&self) -> Vec<VerifiedCatalogue> {
        let mut out: Vec<VerifiedCatalogue> = self
            .checked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(signer, held)| self.still_good(signer, held))
            .map(|(_, held)| held.catalogue.clone())
            .collect();
        out.sort_by(|a, b| a.catalogue.company.cmp(&b.catalogue.company));
        out
    }

    /// One company's catalogue, if held and still good.
    pub fn of(&self, signer: &[u8]) -> Option<VerifiedCatalogue> {
        let checked = self.checked.read().unwrap_or_else(|e| e.into_inner());
        checked
            .get(signer)
            .filter(|held| self.still_good(signer, held))
            .map(|held| held.catalogue.clone())
    }

    /// The catalogues newer than `known` names, as signed (at most
    /// [`MAX_CATALOGUES`]): a sync request's answer.
    pub fn newer_than(&self, known: &[(Vec<u8>, u64)]) -> Vec<SignedCatalogue> {
        let newer: Vec<Vec<u8>> = self
            .all()
            .into_iter()
            .filter(|v| {
                !known
                    .iter()
                    .any(|(who, version)| *who == v.signer && *version >= v.catalogue.version)
            })
            .map(|v| v.signer)
            .take(MAX_CATALOGUES)
            .collect();
        newer
            .iter()
            .filter_map(|k| self.tree.get(k).ok().flatten())
            .collect()
    }

    /// Asks each of `peers` for newer catalogues and keeps what checks; returns how
    /// many were new. A refused catalogue is logged once per reason.
    pub async fn sync_from(&self, client: &Client, peers: &[PeerId]) -> usize {
        let mut new = 0;
        for &peer in peers {
            let request = ContentRequest::Catalogues {
                known: self.known(),
            };
            match client.request::<ContentProto>(peer, request).await {
                Ok(ContentResponse::Catalogues(list)) => {
                    for signed in list.into_iter().take(MAX_CATALOGUES) {
                        match self.offer(signed) {
                            Ok(Some(_)) => new += 1,
                            Ok(None) => {}
                            Err(e) => {
                                let mut logged =
                                    self.logged.lock().unwrap_or_else(|e| e.into_inner());
                                if logged.len() >= 256 {
                                    logged.clear();
                                }
                                if logged.insert(e.clone()) {
                                    tracing::warn!(%peer, "{e}");
                                }
                            }
                        }
                    }
                }
                Ok(ContentResponse::Refused { reason }) => {
                    tracing::debug!(%peer, "catalogues refused: {reason}")
                }
                Err(e) => tracing::debug!(%peer, "catalogues not had: {e}"),
            }
        }
        new
    }
}
