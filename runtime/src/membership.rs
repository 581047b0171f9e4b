//! The operator's side of membership: the network's root key and the certificates it
//! signs (`printmesh network init|enroll|revoke|show`). The forms and their checks are
//! in `printmesh_protocol::membership`; this signs and verifies them with ed25519.
//!
//! A network directory holds `root.key` (the root's ed25519 key, 0600; keep it off the
//! nodes), `network.toml` (the network's name, the root's public key, the next serial),
//! `issued/<serial>.cert` and `revoked/<serial>.rev`.

use std::path::{Path, PathBuf};

use libp2p::identity::{Keypair, PublicKey};
pub use libp2p::PeerId;
use printmesh_protocol::membership::{
    CertError, Certificate, Revocation, SignedCertificate, SignedRevocation, MAX_NAME_LEN,
};
use printmesh_protocol::messages::{proto, Role};
use printmesh_protocol::StoreId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::node::{now_ms, write_secret_file};

#[derive(Debug, Error)]
pub enum MembershipError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("{0}")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MembershipError + '_ {
    move |source| MembershipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `network.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    pub name: String,
    /// The root's public key, protobuf-encoded, hex: what every node's config names.
    pub root_public_key: String,
    pub next_serial: u64,
}

impl NetworkFile {
    pub fn root(&self) -> Result<PublicKey, String> {
        root_from_hex(&self.root_public_key)
    }
}

/// The root's public key from its hex form (as `network.toml` and node configs hold it).
pub fn root_from_hex(hex_key: &str) -> Result<PublicKey, String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|e| format!("root key: {e}"))?;
    PublicKey::try_decode_protobuf(&bytes).map_err(|e| format!("root key: {e}"))
}

fn network_file(dir: &Path) -> PathBuf {
    dir.join("network.toml")
}

pub fn load(dir: &Path) -> Result<NetworkFile, MembershipError> {
    let path = network_file(dir);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    toml::from_str(&text).map_err(|e| MembershipError::Invalid {
        path,
        message: e.to_string(),
    })
}

fn save(dir: &Path, file: &NetworkFile) -> Result<(), MembershipError> {
    let path = network_file(dir);
    let text = toml::to_string(file).map_err(|e| MembershipError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

fn root_key(dir: &Path) -> Result<Keypair, MembershipError> {
    let path = dir.join("root.key");
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    Keypair::from_protobuf_encoding(&bytes).map_err(|e| MembershipError::Invalid {
        path,
        message: e.to_string(),
    })
}

/// Creates a network: its root key and `network.toml`. Refuses to overwrite one.
pub fn init(dir: &Path, name: &str) -> Result<NetworkFile, MembershipError> {
    if name.is_empty() || name.len() > 64 {
        return Err(MembershipError::Refused(
            "a network name is 1 to 64 characters".into(),
        ));
    }
    if network_file(dir).exists() || dir.join("root.key").exists() {
        return Err(MembershipError::Refused(format!(
            "{} already holds a network",
            dir.display()
        )));
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io(dir))?;
    for sub in ["issued", "revoked"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io(&dir.join(sub)))?;
    }
    let root = Keypair::generate_ed25519();
    let secret = root
        .to_protobuf_encoding()
        .map_err(|e| MembershipError::Refused(e.to_string()))?;
    let key_path = dir.join("root.key");
    write_secret_file(&key_path, &secret).map_err(io(&key_path))?;
    let psk_path = dir.join("swarm.key");
    write_secret_file(&psk_path, new_psk().as_bytes()).map_err(io(&psk_path))?;
    let file = NetworkFile {
        name: name.to_string(),
        root_public_key: hex::encode(root.public().encode_protobuf()),
        next_serial: 1,
    };
    save(dir, &file)?;
    Ok(file)
}

/// Issues a certificate for `peer` in `role`, valid for `days`; writes it to
/// `issued/<serial>.cert` and returns that path with the certificate. A kiosk's
/// certificate names its store (and only a kiosk's does).
pub fn enroll(
    dir: &Path,
    role: Role,
    peer: PeerId,
    name: &str,
    store: Option<StoreId>,
    days: u32,
) -> Result<(PathBuf, Certificate), MembershipError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(MembershipError::Refused(format!(
            "a node name is 1 to {MAX_NAME_LEN} characters"
        )));
    }
    match (role.belongs_to_store(), &store) {
        (true, None) => {
            return Err(MembershipError::Refused(format!(
                "{} is enrolled for its store: give --store",
                role.with_article()
            )))
        }
        (true, Some(_)) | (false, None) => {}
        (false, Some(_)) => {
            return Err(MembershipError::Refused(format!(
                "only a kiosk belongs to a store, not {}",
                role.with_article()
            )))
        }
    }
    let mut file = load(dir)?;
    let root = root_key(dir)?;
    let now = now_ms();
    let cert = Certificate {
        network: file.name.clone(),
        peer_id: peer.to_bytes(),
        role,
        name: name.to_string(),
        store,
        serial: file.next_serial,
        issued_ms: now,
        expires_ms: now.saturating_add(i64::from(days).saturating_mul(86_400_000)),
    };
    let signed = sign(&root, &cert)?;
    file.next_serial += 1;
    save(dir, &file)?;
    let path = dir.join("issued").join(format!("{}.cert", cert.serial));
    std::fs::write(&path, signed.encode()?).map_err(io(&path))?;
    Ok((path, cert))
}

/// Signs a certificate with the root key.
pub fn sign(root: &Keypair, cert: &Certificate) -> Result<SignedCertificate, MembershipError> {
    let certificate = cert.encode()?;
    let signature = root
        .sign(&certificate)
        .map_err(|e| MembershipError::Refused(e.to_string()))?;
    Ok(SignedCertificate {
        certificate,
        signature,
    })
}

/// A certificate's contents, if the root signed it (nothing else is checked here).
pub fn verify(signed: &SignedCertificate, root: &PublicKey) -> Result<Certificate, CertError> {
    if !root.verify(&signed.certificate, &signed.signature) {
        return Err(CertError::BadSignature);
    }
    Certificate::decode(&signed.certificate)
}

/// Revokes the certificate with `serial`; writes `revoked/<serial>.rev`.
pub fn revoke(dir: &Path, serial: u64) -> Result<(PathBuf, Revocation), MembershipError> {
    let file = load(dir)?;
    let root = root_key(dir)?;
    let issued = dir.join("issued").join(format!("{serial}.cert"));
    let bytes = std::fs::read(&issued).map_err(io(&issued))?;
    let cert = verify(&SignedCertificate::decode(&bytes)?, &root.public())?;
    let revocation = Revocation {
        network: file.name,
        serial,
        peer_id: cert.peer_id,
        revoked_ms: now_ms(),
    };
    let encoded = revocation.encode()?;
    let signature = root
        .sign(&encoded)
        .map_err(|e| MembershipError::Refused(e.to_string()))?;
    let signed = SignedRevocation {
        revocation: encoded,
        signature,
    };
    let path = dir.join("revoked").join(format!("{serial}.rev"));
    std::fs::write(&path, signed.encode()?).map_err(io(&path))?;
    Ok((path, revocation))
}

/// Revokes by serial, or every certificate issued to a PeerId.
pub fn revoke_id(dir: &Path, id: &str) -> Result<Vec<(PathBuf, Revocation)>, MembershipError> {
    if let Ok(serial) = id.parse::<u64>() {
        return Ok(vec![revoke(dir, serial)?]);
    }
    let peer: PeerId = id.parse().map_err(|_| {
        MembershipError::Refused(format!("{id:?} is neither a serial nor a PeerId"))
    })?;
    let root = load(dir)?.root().map_err(MembershipError::Refused)?;
    let issued = dir.join("issued");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&issued).map_err(io(&issued))?.flatten() {
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(cert) = SignedCertificate::decode(&bytes).and_then(|s| verify(&s, &root)) else {
            continue;
        };
        if cert.peer_id == peer.to_bytes() {
            out.push(revoke(dir, cert.serial)?);
        }
    }
    if out.is_empty() {
        return Err(MembershipError::Refused(format!(
            "no certificate was issued to {peer}"
        )));
    }
    Ok(out)
}

/// A revocation's contents, if the root signed it.
pub fn verify_revocation(
    signed: &SignedRevocation,
    root: &PublicKey,
) -> Result<Revocation, CertError> {
    if !root.verify(&signed.revocation, &signed.signature) {
        return Err(CertError::BadSignature);
    }
    Revocation::decode(&signed.revocation)
}

/// A node's side of membership: its own certificate, and what it checks its peers'
/// hellos against (the root key, the network, the revocations it knows).
#[derive(Clone)]
pub struct Gate {
    network: String,
    root: PublicKey,
    revoked: std::sync::Arc<std::sync::RwLock<RevocationList>>,
    /// Where revocations heard on the network are kept (`<data_dir>/revocations`).
    keep: Option<PathBuf>,
    /// This node's own certificate, encoded, for its hello.
    pub own: Vec<u8>,
    /// The same, as the root signed it (checked once, at load).
    own_cert: Certificate,
}

/// Revoked certificate serials. A revocation names one certificate: a node renewed
/// under a new serial (same key) is welcome again.
#[derive(Default)]
struct RevocationList {
    serials: std::collections::HashSet<u64>,
    /// Each revocation as the root signed it, with when it was revoked, by serial:
    /// what hellos pass on (the most recently revoked).
    signed: std::collections::BTreeMap<u64, (i64, Vec<u8>)>,
}

fn show_store(store: &Option<StoreId>) -> String {
    store
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_else(|| "(none)".into())
}

impl Gate {
    /// Loads the node's membership: its certificate must be the root's, for this
    /// network, this node's PeerId and role, valid now and not revoked.
    pub fn load(
        config: &crate::config::MembershipConfig,
        network: &str,
        own_peer: PeerId,
        role: Role,
        name: &str,
        store: Option<&StoreId>,
        keep: Option<PathBuf>,
    ) -> Result<Gate, String> {
        let root = root_from_hex(&config.root_public_key)?;
        let own = std::fs::read(&config.certificate)
            .map_err(|e| format!("certificate {}: {e}", config.certificate.display()))?;
        let own_cert = SignedCertificate::decode(&own)
            .and_then(|signed| verify(&signed, &root))
            .map_err(|e| format!("this node's certificate: {e}"))?;
        let gate = Gate {
            network: network.to_string(),
            root,
            revoked: Default::default(),
            // Not while loading: what is read back is on disk already.
            keep: None,
            own,
            own_cert,
        };
        // The operator's folder, then the revocations this node heard before.
        for dir in config.revocations.iter().chain(keep.iter()) {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound && Some(dir) == keep.as_ref() =>
                {
                    continue
                }
                Err(e) => return Err(format!("revocations {}: {e}", dir.display())),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                match SignedRevocation::decode(&bytes).and_then(|s| gate.accept_revocation(&s)) {
                    Ok(_) => {}
                    Err(e) => tracing::warn!("revocation {}: {e}", path.display()),
                }
            }
        }
        let gate = Gate { keep, ..gate };
        let cert = &gate.own_cert;
        gate.check(cert, own_peer)
            .map_err(|e| format!("this node's certificate: {e}"))?;
        if cert.role != role {
            return Err(format!(
                "this node's certificate is for a {}, not a {role}",
                cert.role
            ));
        }
        // Its peers check the hello's name and store against the certificate: a
        // config that differs would be refused by all of them.
        if cert.name != name {
            return Err(format!(
                "this node's certificate is for {:?}, its config names it {name:?}",
                cert.name
            ));
        }
        if cert.store.as_ref() != store {
            return Err(format!(
                "this node's certificate is for store {}, its config says {}",
                show_store(&cert.store),
                show_store(&store.cloned())
            ));
        }
        Ok(gate)
    }

    /// A certificate admitted earlier, again: its expiry and the revocations (its
    /// signature was checked when it was admitted).
    pub fn check(&self, cert: &Certificate, peer: PeerId) -> Result<(), CertError> {
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        cert.check(&self.network, &peer.to_bytes(), now_ms(), |serial, _| {
            revoked.serials.contains(&serial)
        })
    }

    /// Whether a peer's hello proves it belongs, in the role it says.
    pub fn admit(
        &self,
        peer: PeerId,
        hello: &printmesh_protocol::messages::Hello,
    ) -> Result<Certificate, CertError> {
        let bytes = hello.certificate.as_deref().ok_or(CertError::Missing)?;
        let cert = verify(&SignedCertificate::decode(bytes)?, &self.root)?;
        self.check(&cert, peer)?;
        if cert.role != hello.role {
            return Err(CertError::NotAllowed(format!(
                "enrolled as a {}, says it is a {}",
                cert.role, hello.role
            )));
        }
        if cert.name != hello.name {
            return Err(CertError::NotAllowed(format!(
                "enrolled as {:?}, says it is {:?}",
                cert.name,
                hello.name.chars().take(MAX_NAME_LEN).collect::<String>()
            )));
        }
        if cert.store != hello.store {
            return Err(CertError::NotAllowed(format!(
                "enrolled for store {}, says store {}",
                show_store(&cert.store),
                show_store(&hello.store)
            )));
        }
        Ok(cert)
    }

    /// Whether a gossiped event's origin may emit it: its certificate (carried in the
    /// event) is the root's, for this network and that origin, valid and unrevoked,
    /// and for the role that emits this kind of event.
    pub fn admit_event(
        &self,
        event: &printmesh_protocol::messages::OrderEvent,
        certificate: Option<&[u8]>,
    ) -> Result<(), CertError> {
        let origin = PeerId::from_bytes(&event.origin)
            .map_err(|_| CertError::Malformed("origin is not a PeerId".into()))?;
        let bytes = certificate.ok_or(CertError::Missing)?;
        let cert = verify(&SignedCertificate::decode(bytes)?, &self.root)?;
        self.check(&cert, origin)?;
        let may = event.kind.emitted_by();
        if cert.role != may {
            return Err(CertError::NotAllowed(format!(
                "{} may not emit {:?} (only {})",
                cert.role.with_article(),
                printmesh_protocol::order::Step::of(&event.kind),
                may.with_article()
            )));
        }
        Ok(())
    }

    /// Whether `signer` (PeerId bytes) may sign what only `role` signs (a catalogue: a
    /// content company; a licence: a kiosk): its `certificate` is the root's, for this
    /// network and that signer, valid now and unrevoked, and for `role`.
    pub fn admit_signer(
        &self,
        signer: &[u8],
        certificate: Option<&[u8]>,
        role: Role,
    ) -> Result<Certificate, CertError> {
        let peer = PeerId::from_bytes(signer)
            .map_err(|_| CertError::Malformed("the signer is not a PeerId".into()))?;
        let bytes = certificate.ok_or(CertError::Missing)?;
        let cert = verify(&SignedCertificate::decode(bytes)?, &self.root)?;
        self.check(&cert, peer)?;
        if cert.role != role {
            return Err(CertError::NotAllowed(format!(
                "signed by {}, not {}",
                cert.role.with_article(),
                role.with_article()
            )));
        }
        Ok(cert)
    }

    /// The newest revocations this node knows, as signed, for its hello (at most
    /// [`proto::MAX_HELLO_REVOCATIONS`]).
    pub fn revocations(&self) -> Vec<Vec<u8>> {
        let list = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        let mut newest: Vec<&(i64, Vec<u8>)> = list.signed.values().collect();
        newest.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        newest
            .into_iter()
            .take(proto::MAX_HELLO_REVOCATIONS)
            .map(|(_, bytes)| bytes.clone())
            .collect()
    }

    /// Why this node's own certificate no longer counts (expired, or revoked), if it
    /// does not: its peers refuse it from then on.
    pub fn own_problem(&self, own_peer: PeerId) -> Option<CertError> {
        self.check(&self.own_cert, own_peer).err()
    }

    /// Takes a revocation the root signed; returns it and whether it is new here. A
    /// new one is kept in the node's `revocations/` folder, so a restart knows it.
    pub fn accept_revocation(
        &self,
        signed: &SignedRevocation,
    ) -> Result<(Revocation, bool), CertError> {
        // One this node has is not checked again (a peer cannot make it verify the
        // same signatures over and over).
        if let Ok(r) = Revocation::decode(&signed.revocation) {
            let list = self.revoked.read().unwrap_or_else(|e| e.into_inner());
            if list
                .signed
                .get(&r.serial)
                .is_some_and(|(_, b)| signed.encode().is_ok_and(|s| s == *b))
            {
                return Ok((r, false));
            }
        }
        let r = verify_revocation(signed, &self.root)?;
        if r.network != self.network {
            return Err(CertError::OtherNetwork(
                r.network.chars().take(64).collect(),
            ));
        }
        let new = {
            let mut list = self.revoked.write().unwrap_or_else(|e| e.into_inner());
            let new = list.serials.insert(r.serial);
            if new {
                if let Ok(bytes) = signed.encode() {
                    list.signed.insert(r.serial, (r.revoked_ms, bytes));
                }
            }
            new
        };
        if new {
            if let Some(dir) = &self.keep {
                let path = dir.join(format!("{}.rev", r.serial));
                let written = signed
                    .encode()
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|bytes| {
                        std::fs::create_dir_all(dir)?;
                        std::fs::write(&path, bytes)
                    });
                if let Err(e) = written {
                    tracing::error!("cannot keep {}: {e}", path.display());
                }
            }
        }
        Ok((r, new))
    }
}

/// Reads a private network's pre-shared key (the `/key/swarm/psk/1.0.0/` format).
pub fn load_psk(path: &Path) -> Result<libp2p::pnet::PreSharedKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.parse()
        .map_err(|e| format!("{}: not a pre-shared key: {e}", path.display()))
}

/// A new pre-shared key, in the file format.
pub fn new_psk() -> String {
    let key: [u8; 32] = rand::random();
    format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", hex::encode(key))
}

/// What `printmesh network show FILE` prints of a certificate.
pub fn describe(cert: &Certificate) -> serde_json::Value {
    let peer = PeerId::from_bytes(&cert.peer_id)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| hex::encode(&cert.peer_id));
    let when = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| ms.to_string())
    };
    serde_json::json!({
        "network": cert.network, "serial": cert.serial, "role": cert.role.name(),
        "name": cert.name, "peer_id": peer, "store": cert.store.as_ref().map(|s| s.to_string()),
        "issued": when(cert.issued_ms), "expires": when(cert.expires_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_enroll_verify_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        let file = init(&net, "shops").unwrap();
        assert!(init(&net, "shops").is_err(), "never overwrites a network");
        let root = file.root().unwrap();
        let node = Keypair::generate_ed25519();
        let peer = node.public().to_peer_id();
        let (path, cert) = enroll(&net, Role::Lab, peer, "Lab One", None, 30).unwrap();
        assert_eq!(cert.serial, 1);
        let signed = SignedCertificate::decode(&std::fs::read(&path).unwrap()).unwrap();
        let back = verify(&signed, &root).unwrap();
        assert_eq!(back, cert);
        assert_eq!(
            back.check("shops", &peer.to_bytes(), now_ms(), |_, _| false),
            Ok(())
        );
        // Another root, or a changed byte, is not this network's word.
        let other = Keypair::generate_ed25519();
        assert_eq!(
            verify(&signed, &other.public()),
            Err(CertError::BadSignature)
        );
        let mut tampered = signed.clone();
        if let Some(b) = tampered.certificate.last_mut() {
            *b ^= 1;
        }
        assert_eq!(verify(&tampered, &root), Err(CertError::BadSignature));
        // A self-signed certificate (the node's own key as "root") is refused.
        let forged = sign(&node, &cert).unwrap();
        assert_eq!(verify(&forged, &root), Err(CertError::BadSignature));

        assert!(
            enroll(&net, Role::Kiosk, peer, "Kiosk", None, 1).is_err(),
            "a kiosk needs its store"
        );
        assert!(
            enroll(&net, Role::Lab, peer, "Lab", Some("s1".parse().unwrap()), 1).is_err(),
            "only a kiosk has a store"
        );
        let (_, second) = enroll(
            &net,
            Role::Kiosk,
            peer,
            "Kiosk",
            Some("s1".parse().unwrap()),
            1,
        )
        .unwrap();
        assert_eq!(second.store, Some("s1".parse().unwrap()));
        assert_eq!(second.serial, 2, "serials increase");
        let (rev_path, revocation) = revoke(&net, 1).unwrap();
        assert_eq!(revocation.peer_id, peer.to_bytes());
        let signed_rev = SignedRevocation::decode(&std::fs::read(rev_path).unwrap()).unwrap();
        assert_eq!(verify_revocation(&signed_rev, &root).unwrap(), revocation);
        assert_eq!(
            verify_revocation(&signed_rev, &other.public()),
            Err(CertError::BadSignature)
        );
        assert!(revoke(&net, 99).is_err());
        // By PeerId: every certificate it holds (serial 2 is left).
        let by_peer = revoke_id(&net, &peer.to_string()).unwrap();
        assert_eq!(
            by_peer
                .iter()
                .map(|(_, r)| r.serial)
                .collect::<std::collections::BTreeSet<_>>(),
            [1, 2].into()
        );
        assert!(revoke_id(&net, "not-a-peer").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(net.join("root.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
