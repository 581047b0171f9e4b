//! Content-addressed blobs (BLAKE3) on disk, and the stream protocol that moves them.
//!
//! A blob lives at `blobs/<first two hex digits>/<hex id>` once verified; while it is
//! arriving it grows in `blobs/partial/<hex id>`. The push protocol on
//! `/printmesh/blob/1`:
//!
//! 1. sender → [`BlobOffer`] `{ blob, len }`
//! 2. receiver → [`BlobReply::SendFrom`] `{ offset }`: `offset == len` means it already
//!    holds the blob (nothing is sent); otherwise it is the length of the partial file
//!    kept from an earlier, cut transfer, and the sender resumes there.
//! 3. sender → the raw bytes `offset..len`, in chunks
//! 4. receiver hashes what it has; only a match is moved into place → [`BlobVerdict`].

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use printmesh_protocol::messages::{proto, BlobOffer, BlobReply, BlobVerdict, Role};
use printmesh_protocol::BlobId;
use thiserror::Error;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt, AsyncWriteExt as _};

use crate::net::{read_frame, write_frame};

/// Bytes per chunk on the wire and per disk write.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Most transfers a node receives at once.
pub const MAX_CONCURRENT_RECEIVES: usize = 16;
/// How long either side waits for the next read before giving up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum BlobError {
    #[error("blob io: {0}")]
    Io(#[from] io::Error),
    #[error("cannot open a blob stream to {peer}: {reason}")]
    Open { peer: PeerId, reason: String },
    #[error("blob {0} is not in the local store")]
    NotFound(BlobId),
    #[error("peer refused blob {blob}: {reason}")]
    Refused { blob: BlobId, reason: String },
    #[error("peer is already receiving blob {0}")]
    Busy(BlobId),
    #[error("blob {0}: the bytes received do not match the hash")]
    HashMismatch(BlobId),
    #[error("blob {blob} is {len} bytes, over the {max}-byte limit")]
    TooLarge { blob: BlobId, len: u64, max: u64 },
    #[error("transfer timed out")]
    Timeout,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    /// Bytes of blob data put on the wire.
    pub bytes_sent: u64,
    /// Where the transfer started (0, or where an earlier cut one stopped).
    pub resumed_from: u64,
    /// The peer already had the whole blob; nothing was sent.
    pub already_had: bool,
}

/// Blobs on disk, addressed by hash.
pub struct BlobStore {
    dir: PathBuf,
    partial_dir: PathBuf,
    pub(crate) receiving: Mutex<HashSet<BlobId>>,
}

/// Removes a blob from the in-progress set when a receive ends, however it ends.
pub(crate) struct Receiving<'a> {
    pub(crate) store: &'a BlobStore,
    pub(crate) blob: BlobId,
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.store.receiving.lock() {
            set.remove(&self.blob);
        }
    }
}

async fn hash_file(path: &Path) -> io::Result<BlobId> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hasher.finalize().into())
}

impl BlobStore {
    pub fn open(dir: &Path) -> io::Result<Arc<BlobStore>> {
        let partial_dir = dir.join("partial");
        std::fs::create_dir_all(&partial_dir)?;
        Ok(Arc::new(BlobStore {
            dir: dir.to_path_buf(),
            partial_dir,
            receiving: Mutex::new(HashSet::new()),
        }))
    }

    /// Where a verified blob lives.
    pub fn path(&self, blob: &BlobId) -> PathBuf {
        let hex = blob.to_hex();
        self.dir.join(hex.get(..2).unwrap_or("00")).join(hex)
    }

    pub(crate) fn partial_path(&self, blob: &BlobId) -> PathBuf {
        self.partial_dir.join(blob.to_hex())
    }

    pub fn has(&self, blob: &BlobId) -> bool {
        self.path(blob).is_file()
    }

    /// The blobs among `wanted` that are not stored here, in order.
    pub fn missing(&self, wanted: impl IntoIterator<Item = BlobId>) -> Vec<BlobId> {
        wanted.into_iter().filter(|b| !self.has(b)).collect()
    }

    /// Length of a verified blob.
    pub fn len_of(&self, blob: &BlobId) -> Option<u64> {
        std::fs::metadata(self.path(blob)).ok().map(|m| m.len())
    }

    /// Bytes of a transfer kept from an earlier cut.
    pub fn partial_len(&self, blob: &BlobId) -> u64 {
        std::fs::metadata(self.partial_path(blob))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The partial file of `blob`, cut to `from` bytes (what was kept of an earlier
    /// transfer), ready to take the bytes after them.
    pub(crate) async fn open_partial(
        &self,
        blob: &BlobId,
        from: u64,
    ) -> Result<tokio::fs::File, BlobError> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(self.partial_path(blob))
            .await?;
        file.set_len(from).await?;
        file.seek(io::SeekFrom::Start(from)).await?;
        Ok(file)
    }

    /// Moves a fully written file into place if its hash is `blob`; otherwise deletes it.
    pub(crate) async fn commit(&self, blob: &BlobId, written: &Path) -> Result<(), BlobError> {
        if hash_file(written).await? != *blob {
            let _ = tokio::fs::remove_file(written).await;
            return Err(BlobError::HashMismatch(*blob));
        }
        let target = self.path(blob);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(written, &target).await?;
        Ok(())
    }

    /// Stores bytes already in memory (e.g. read from a memory card); returns their id.
    pub async fn import_bytes(&self, bytes: &[u8]) -> Result<BlobId, BlobError> {
        let blob = BlobId::of(bytes);
        if self.has(&blob) {
            return Ok(blob);
        }
        static IMPORTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = IMPORTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.partial_dir.join(format!(
            "import-{}-{}-{n}",
            blob.to_hex(),
            std::process::id()
        ));
        let mut file = tokio::fs::File::create(&tmp).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        drop(file);
        self.commit(&blob, &tmp).await?;
        Ok(blob)
    }

    /// Copies a file into the store; returns its id and length.
    pub async fn import_file(&self, path: &Path) -> Result<(BlobId, u64), BlobError> {
        let len = tokio::fs::metadata(path).await?.len();
        if len > proto::BLOB_MAX_BYTES {
            return Err(BlobError::TooLarge {
                blob: BlobId([0; 32]),
                len,
                max: proto::BLOB_MAX_BYTES,
            });
        }
        let bytes = tokio::fs::read(path).await?;
        let blob = self.import_bytes(&bytes).await?;
        Ok((blob, bytes.len() as u64))
    }

    /// Copies a file of any size into the store without holding it in memory (a
    /// content company's item); returns its id and length.
    pub async fn import_large(&self, path: &Path) -> Result<(BlobId, u64), BlobError> {
        let blob = hash_file(path).await?;
        let len = tokio::fs::metadata(path).await?.len();
        if self.has(&blob) {
            return Ok((blob, len));
        }
        static IMPORTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = IMPORTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.partial_dir.join(format!(
            "import-{}-{}-{n}",
            blob.to_hex(),
            std::process::id()
        ));
        tokio::fs::copy(path, &tmp).await?;
        tokio::fs::File::open(&tmp).await?.sync_all().await?;
        self.commit(&blob, &tmp).await?;
        Ok((blob, len))
    }

    pub async fn read(&self, blob: &BlobId) -> Result<Vec<u8>, BlobError> {
        tokio::fs::read(self.path(blob)).await.map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                BlobError::NotFound(*blob)
            } else {
                BlobError::Io(e)
            }
        })
    }

    /// The first `max` bytes of a blob (all of it if shorter).
    pub async fn read_prefix(&self, blob: &BlobId, max: usize) -> Result<Vec<u8>, BlobError> {
        let file = tokio::fs::File::open(self.path(blob)).await.map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                BlobError::NotFound(*blob)
            } else {
                BlobError::Io(e)
            }
        })?;
        let mut out = Vec::new();
        file.take(max as u64).read_to_end(&mut out).await?;
        Ok(out)
    }

    /// Blob ids stored here.
    pub fn list(&self) -> Vec<BlobId> {
        let mut out = Vec::new();
        let Ok(dirs) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for d in dirs.flatten() {
            if d.file_name() == "partial" {
                continue;
            }
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                if let Some(id) = f.file_name().to_str().and_then(|s| s.parse().ok()) {
                    out.push(id);
                }
            }
        }
        out.sort();
        out
    }
}

/// Reads the bytes `have..len` of a transfer off `stream` into `file` (a partial file
/// opened at `have`), then syncs what arrived, so the next transfer resumes after it
/// whatever happened. Returns how far it got and, if the peer stopped early, went
/// quiet or failed, what cut it. `progress(have)` after each chunk.
pub(crate) async fn read_into<S>(
    stream: &mut S,
    mut file: tokio::fs::File,
    mut have: u64,
    len: u64,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<(u64, Option<BlobError>), BlobError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut cut = None;
    while have < len {
        let want = (len - have).min(CHUNK_BYTES as u64) as usize;
        let chunk = buf.get_mut(..want).ok_or(BlobError::Timeout)?;
        match tokio::time::timeout(IO_TIMEOUT, stream.read(chunk)).await {
            Ok(Ok(0)) => {
                cut = Some(BlobError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer stopped sending early",
                )));
                break;
            }
            Ok(Ok(n)) => {
                file.write_all(chunk.get(..n).unwrap_or_default()).await?;
                have += n as u64;
                progress(have);
            }
            Ok(Err(e)) => {
                cut = Some(BlobError::Io(e));
                break;
            }
            Err(_) => {
                cut = Some(BlobError::Timeout);
                break;
            }
        }
    }
    file.sync_data().await?;
    Ok((have, cut))
}

pub(crate) async fn timed<T>(
    f: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, BlobError> {
    tokio::time::timeout(IO_TIMEOUT, f)
        .await
        .map_err(|_| BlobError::Timeout)?
        .map_err(BlobError::Io)
}

/// Pushes `blob` over an open stream. `stop_after` cuts the transfer after that many
/// data bytes (tests use it to simulate a dropped connection).
pub async fn send_over<S>(
    stream: &mut S,
    store: &BlobStore,
    blob: BlobId,
    stop_after: Option<u64>,
) -> Result<SendOutcome, BlobError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let path = store.path(&blob);
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            BlobError::NotFound(blob)
        } else {
            BlobError::Io(e)
        }
    })?;
    let len = file.metadata().await?.len();
    timed(write_frame(
        stream,
        &BlobOffer { blob, len },
        proto::BLOB_CONTROL_MAX_BYTES,
    ))
    .await?;
    let reply: BlobReply = timed(read_frame(stream, proto::BLOB_CONTROL_MAX_BYTES)).await?;
    let offset = match reply {
        BlobReply::SendFrom { offset } if offset >= len => {
            return Ok(SendOutcome {
                bytes_sent: 0,
                resumed_from: len,
                already_had: true,
            })
        }
        BlobReply::SendFrom { offset } => offset,
        BlobReply::Busy => return Err(BlobError::Busy(blob)),
        BlobReply::Refused { reason } => return Err(BlobError::Refused { blob, reason }),
    };
    file.seek(io::SeekFrom::Start(offset)).await?;
    let mut sent = 0u64;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let budget = stop_after.unwrap_or(u64::MAX);
    while offset + sent < len {
        let want = (len - offset - sent)
            .min(CHUNK_BYTES as u64)
            .min(budget - sent) as usize;
        if want == 0 {
            // Simulated cut: close without finishing.
            let _ = stream.close().await;
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "transfer cut",
            )));
        }
        let chunk = buf.get_mut(..want).ok_or(BlobError::Timeout)?;
        file.read_exact(chunk).await?;
        timed(stream.write_all(chunk)).await?;
        sent += want as u64;
    }
    timed(stream.flush()).await?;
    let verdict: BlobVerdict = timed(read_frame(stream, proto::BLOB_CONTROL_MAX_BYTES)).await?;
    match verdict {
        BlobVerdict::Stored => Ok(SendOutcome {
            bytes_sent: sent,
            resumed_from: offset,
            already_had: false,
        }),
        BlobVerdict::HashMismatch => Err(BlobError::HashMismatch(blob)),
        BlobVerdict::Failed { reason } => Err(BlobError::Refused { blob, reason }),
    }
}

/// Receives one pushed blob from an open stream.
pub async fn receive_over<S>(stream: &mut S, store: &BlobStore) -> Result<BlobId, BlobError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let offer: BlobOffer = timed(read_frame(stream, proto::BLOB_CONTROL_MAX_BYTES)).await?;
    let blob = offer.blob;
    let refuse = |reason: String| BlobReply::Refused { reason };
    if offer.len > proto::BLOB_MAX_BYTES {
        let reply = refuse(format!(
            "{} bytes is over the {}-byte limit",
            offer.len,
            proto::BLOB_MAX_BYTES
        ));
        timed(write_frame(stream, &reply, proto::BLOB_CONTROL_MAX_BYTES)).await?;
        return Err(BlobError::TooLarge {
            blob,
            len: offer.len,
            max: proto::BLOB_MAX_BYTES,
        });
    }
    if store.has(&blob) {
        let reply = BlobReply::SendFrom { offset: offer.len };
        timed(write_frame(stream, &reply, proto::BLOB_CONTROL_MAX_BYTES)).await?;
        return Ok(blob);
    }
    let claimed = store
        .receiving
        .lock()
        .map(|mut set| set.insert(blob))
        .unwrap_or(false);
    if !claimed {
        timed(write_frame(
            stream,
            &BlobReply::Busy,
            proto::BLOB_CONTROL_MAX_BYTES,
        ))
        .await?;
        return Err(BlobError::Busy(blob));
    }
    let _guard = Receiving { store, blob };
    let partial = store.partial_path(&blob);
    let mut offset = store.partial_len(&blob);
    if offset > offer.len {
        offset = 0;
    }
    if offset == offer.len && offset > 0 {
        // Every byte arrived before, but it was never verified (a crash between the
        // last write and the commit): verify now rather than claim to hold it.
        match store.commit(&blob, &partial).await {
            Ok(()) => {
                let reply = BlobReply::SendFrom { offset: offer.len };
                timed(write_frame(stream, &reply, proto::BLOB_CONTROL_MAX_BYTES)).await?;
                return Ok(blob);
            }
            Err(BlobError::HashMismatch(_)) => offset = 0,
            Err(e) => return Err(e),
        }
    }
    let file = store.open_partial(&blob, offset).await?;
    timed(write_frame(
        stream,
        &BlobReply::SendFrom { offset },
        proto::BLOB_CONTROL_MAX_BYTES,
    ))
    .await?;

    let (kept, cut) = read_into(stream, file, offset, offer.len, &mut |_| {}).await?;
    if let Some(e) = cut {
        tracing::info!(blob = %blob.short(), kept, "blob transfer cut; partial kept for resume");
        return Err(e);
    }
    let verdict = match store.commit(&blob, &partial).await {
        Ok(()) => BlobVerdict::Stored,
        Err(BlobError::HashMismatch(_)) => BlobVerdict::HashMismatch,
        Err(e) => BlobVerdict::Failed {
            reason: e.to_string(),
        },
    };
    timed(write_frame(stream, &verdict, proto::BLOB_CONTROL_MAX_BYTES)).await?;
    let _ = stream.close().await;
    match verdict {
        BlobVerdict::Stored => Ok(blob),
        BlobVerdict::HashMismatch => Err(BlobError::HashMismatch(blob)),
        BlobVerdict::Failed { reason } => Err(BlobError::Refused { blob, reason }),
    }
}

pub fn blob_protocol() -> StreamProtocol {
    StreamProtocol::new(proto::BLOB)
}

/// Pushes a blob to a peer over a new stream.
pub async fn send_blob(
    control: &mut libp2p_stream::Control,
    store: &BlobStore,
    peer: PeerId,
    blob: BlobId,
) -> Result<SendOutcome, BlobError> {
    send_blob_cut(control, store, peer, blob, None).await
}

/// How often a sender retries a blob the receiver is already receiving from someone
/// else, and how long it waits between tries.
pub const BUSY_RETRIES: u32 = 300;
pub const BUSY_WAIT: Duration = Duration::from_millis(100);

/// [`send_blob`] that stops after `stop_after` data bytes, for tests of resumption.
/// When the receiver is busy with the same blob (another kiosk order uploading the
/// same photo), waits and offers again: the second offer usually finds it stored.
pub async fn send_blob_cut(
    control: &mut libp2p_stream::Control,
    store: &BlobStore,
    peer: PeerId,
    blob: BlobId,
    stop_after: Option<u64>,
) -> Result<SendOutcome, BlobError> {
    let mut tries = 0;
    loop {
        let mut stream = control
            .open_stream(peer, blob_protocol())
            .await
            .map_err(|e| BlobError::Open {
                peer,
                reason: e.to_string(),
            })?;
        match send_over(&mut stream, store, blob, stop_after).await {
            Err(BlobError::Busy(_)) if tries < BUSY_RETRIES => {
                tries += 1;
                tokio::time::sleep(BUSY_WAIT).await;
            }
            other => return other,
        }
    }
}

pub use printmesh_protocol::wire::blob::takes_blobs;

/// Who may open a stream of a raw-stream protocol: a peer that said hello, in a role
/// `may` allows. A refusal is logged once per peer and reason (bounded).
#[derive(Default)]
pub(crate) struct StreamGate {
    refused: HashSet<(PeerId, String)>,
}

impl StreamGate {
    /// Why `peer`'s stream is refused, if it is.
    pub(crate) async fn refusal(
        &mut self,
        client: &crate::net::Client,
        peer: PeerId,
        what: &str,
        may: impl Fn(Role) -> Result<(), String>,
    ) -> Option<String> {
        let from = client
            .peers()
            .await
            .into_iter()
            .find(|p| p.peer == peer)
            .map(|p| p.hello.role);
        let why = match from {
            None => "it has not said hello".to_string(),
            Some(from) => may(from).err()?,
        };
        if self.refused.len() >= 1024 {
            self.refused.clear();
        }
        if self.refused.insert((peer, why.clone())) {
            tracing::warn!(%peer, "{what} refused: {why}");
        }
        Some(why)
    }
}

/// Accepts pushed blobs from peers of our network (they said hello, in a role that
/// sends this node photos, see [`takes_blobs`]) until the node stops, at most
/// [`MAX_CONCURRENT_RECEIVES`] at once. A failed transfer is logged; it never stops
/// the server.
pub async fn serve_blobs(client: crate::net::Client, store: Arc<BlobStore>, role: Role) {
    let mut control = client.stream_control();
    let mut incoming = match control.accept(blob_protocol()) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::error!("blob protocol already registered: {e}");
            return;
        }
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_RECEIVES));
    let mut gate = StreamGate::default();
    while let Some((peer, mut stream)) = incoming.next().await {
        let may = |from: Role| {
            if takes_blobs(from, role) {
                Ok(())
            } else {
                Err(format!("a {role} takes no photos from a {from}"))
            }
        };
        if gate
            .refusal(&client, peer, "blob stream", may)
            .await
            .is_some()
        {
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many blob transfers at once; refusing one");
            continue;
        };
        let store = store.clone();
        tokio::spawn(async move {
            match receive_over(&mut stream, &store).await {
                Ok(blob) => tracing::debug!(%peer, blob = %blob.short(), "blob stored"),
                Err(BlobError::Busy(blob)) => {
                    tracing::debug!(%peer, blob = %blob.short(), "busy; sender will offer again")
                }
                Err(e) => tracing::warn!(%peer, "blob receive failed: {e}"),
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn import_is_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = store.import_bytes(b"photo bytes").await.unwrap();
        let b = store.import_bytes(b"photo bytes").await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a, BlobId::of(b"photo bytes"));
        assert_eq!(store.read(&a).await.unwrap(), b"photo bytes");
        assert_eq!(store.list(), vec![a]);
        assert!(matches!(
            store.read(&BlobId([1; 32])).await,
            Err(BlobError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn commit_refuses_bytes_that_do_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let claimed = BlobId::of(b"the real photo");
        let path = dir.path().join("partial").join(claimed.to_hex());
        std::fs::write(&path, b"something else").unwrap();
        assert!(matches!(
            store.commit(&claimed, &path).await,
            Err(BlobError::HashMismatch(_))
        ));
        assert!(!store.has(&claimed));
        assert!(!path.exists());
    }
}
