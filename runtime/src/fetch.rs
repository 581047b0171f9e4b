//! Fetching a blob from a peer that holds it (`/printmesh/fetch/1`): the pull beside
//! the push of [`crate::blobs`]. A kiosk fetches a download's bytes from a content
//! company (or an intermediary holding them); the asker keeps what arrived in the
//! blob store's partial file, so a cut transfer resumes there, and stores the blob only
//! once its BLAKE3 matches what the signed catalogue says.

use std::io;
use std::sync::Arc;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use printmesh_protocol::messages::Role;
use printmesh_protocol::wire::content::{
    may_fetch, FetchReply, FetchRequest, FETCH_CONTROL_MAX_BYTES, FETCH_ID,
};
use printmesh_protocol::BlobId;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt};

use crate::blobs::{
    read_into, timed, BlobError, BlobStore, Receiving, StreamGate, CHUNK_BYTES, IO_TIMEOUT,
};
use crate::net::{read_frame, write_frame};

/// Most fetches a node serves at once.
pub const MAX_CONCURRENT_SERVES: usize = 16;

pub fn fetch_protocol() -> StreamProtocol {
    StreamProtocol::new(FETCH_ID)
}

/// Fetches `blob` (`len` bytes, as the catalogue says) from `peer` into `store`,
/// resuming a partial file kept from an earlier cut. `progress(have, len)` is called
/// as bytes arrive. Returns the bytes fetched over the wire this time.
pub async fn fetch_blob(
    control: &mut libp2p_stream::Control,
    store: &BlobStore,
    peer: PeerId,
    blob: BlobId,
    len: u64,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, BlobError> {
    fetch_blob_within(control, store, peer, blob, Some(len), len, progress).await
}

/// [`fetch_blob`] of a blob whose length is not known beforehand (a cover: only its
/// hash is in the catalogue), at most `max` bytes.
pub async fn fetch_blob_within(
    control: &mut libp2p_stream::Control,
    store: &BlobStore,
    peer: PeerId,
    blob: BlobId,
    expect: Option<u64>,
    max: u64,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, BlobError> {
    if store.has(&blob) {
        let len = store.len_of(&blob).unwrap_or(0);
        progress(len, len);
        return Ok(0);
    }
    let claimed = store
        .receiving
        .lock()
        .map(|mut set| set.insert(blob))
        .unwrap_or(false);
    if !claimed {
        return Err(BlobError::Busy(blob));
    }
    let _guard = Receiving { store, blob };
    let partial = store.partial_path(&blob);
    let mut offset = store.partial_len(&blob);
    if expect.is_some_and(|len| offset == len && len > 0) {
        // Every byte came before but was never verified: verify now.
        match store.commit(&blob, &partial).await {
            Ok(()) => {
                progress(offset, offset);
                return Ok(0);
            }
            Err(BlobError::HashMismatch(_)) => offset = 0,
            Err(e) => return Err(e),
        }
    }
    let mut stream = control
        .open_stream(peer, fetch_protocol())
        .await
        .map_err(|e| BlobError::Open {
            peer,
            reason: e.to_string(),
        })?;
    if expect.is_some_and(|len| offset > len) || offset > max {
        offset = 0;
    }
    timed(write_frame(
        &mut stream,
        &FetchRequest { blob, offset },
        FETCH_CONTROL_MAX_BYTES,
    ))
    .await?;
    let reply: FetchReply = timed(read_frame(&mut stream, FETCH_CONTROL_MAX_BYTES)).await?;
    let len = match reply {
        FetchReply::Sending { len } if expect.is_none_or(|e| e == len) && len <= max => len,
        FetchReply::Sending { len: theirs } => {
            return Err(BlobError::Refused {
                blob,
                reason: match expect {
                    Some(len) => {
                        format!("the peer's copy is {theirs} bytes, the catalogue says {len}")
                    }
                    None => format!("the peer's copy is {theirs} bytes, over {max}"),
                },
            })
        }
        FetchReply::NotHere => return Err(BlobError::NotFound(blob)),
        FetchReply::Refused { reason } => return Err(BlobError::Refused { blob, reason }),
    };
    if offset > len {
        offset = 0;
    }
    receive_rest(&mut stream, store, blob, len, offset, progress).await
}

/// Reads `offset..len` of `blob` from an answered fetch stream into its partial file,
/// then stores it if its hash matches.
async fn receive_rest(
    stream: &mut libp2p::Stream,
    store: &BlobStore,
    blob: BlobId,
    len: u64,
    offset: u64,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, BlobError> {
    let partial = store.partial_path(&blob);
    let file = store.open_partial(&blob, offset).await?;
    let (have, cut) = read_into(stream, file, offset, len, &mut |have| progress(have, len)).await?;
    let _ = stream.close().await;
    if let Some(e) = cut {
        tracing::info!(blob = %blob.short(), kept = have, "fetch cut; partial kept for resume");
        return Err(e);
    }
    store.commit(&blob, &partial).await?;
    Ok(have - offset)
}

/// Serves fetches of the blobs in `store` to the peers whose role may fetch from
/// `role` ([`may_fetch`]), at most [`MAX_CONCURRENT_SERVES`] at once, until the node
/// stops. A refused or failed fetch is logged once per peer and reason.
pub async fn serve_fetch(client: crate::net::Client, store: Arc<BlobStore>, role: Role) {
    let mut control = client.stream_control();
    let mut incoming = match control.accept(fetch_protocol()) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::error!("fetch protocol already registered: {e}");
            return;
        }
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_SERVES));
    let mut gate = StreamGate::default();
    while let Some((peer, stream)) = incoming.next().await {
        let may = |from: Role| {
            if may_fetch(from, role) {
                Ok(())
            } else {
                Err(format!("a {from} fetches nothing from a {role}"))
            }
        };
        if let Some(why) = gate.refusal(&client, peer, "fetch", may).await {
            tokio::spawn(refuse(stream, why));
            continue;
        }
        let mut stream = stream;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, "busy: too many fetches at once".into()));
            continue;
        };
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(&mut stream, &store).await {
                tracing::info!(%peer, "fetch ended early: {e}");
            }
            drop(permit);
        });
    }
}

/// Tells the asker why not, and closes the stream (off the accept loop).
async fn refuse(mut stream: libp2p::Stream, reason: String) {
    let _ = timed(write_frame(
        &mut stream,
        &FetchReply::Refused { reason },
        FETCH_CONTROL_MAX_BYTES,
    ))
    .await;
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.close()).await;
}

async fn serve_one(stream: &mut libp2p::Stream, store: &BlobStore) -> Result<(), BlobError> {
    let request: FetchRequest = timed(read_frame(stream, FETCH_CONTROL_MAX_BYTES)).await?;
    let Some(len) = store.len_of(&request.blob) else {
        timed(write_frame(
            stream,
            &FetchReply::NotHere,
            FETCH_CONTROL_MAX_BYTES,
        ))
        .await?;
        return Ok(());
    };
    let offset = request.offset.min(len);
    timed(write_frame(
        stream,
        &FetchReply::Sending { len },
        FETCH_CONTROL_MAX_BYTES,
    ))
    .await?;
    let mut file = tokio::fs::File::open(store.path(&request.blob)).await?;
    file.seek(io::SeekFrom::Start(offset)).await?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut left = len - offset;
    while left > 0 {
        let want = left.min(CHUNK_BYTES as u64) as usize;
        let chunk = buf.get_mut(..want).ok_or(BlobError::Timeout)?;
        let n = file.read(chunk).await?;
        if n == 0 {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob shrank while it was sent",
            )));
        }
        tokio::time::timeout(
            IO_TIMEOUT,
            stream.write_all(chunk.get(..n).unwrap_or_default()),
        )
        .await
        .map_err(|_| BlobError::Timeout)??;
        left -= n as u64;
    }
    let _ = stream.close().await;
    Ok(())
}
