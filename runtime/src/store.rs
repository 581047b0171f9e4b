//! A node's sled database, seen as typed trees. Every value is stored through the
//! protocol codec with a format-version byte, so a later release can still read it.

use std::marker::PhantomData;
use std::path::Path;

use printmesh_protocol::codec::{decode_stored, encode_stored, CodecError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::Transactional;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(sled::Error),
    #[error("tree {tree}: stored value cannot be read: {source}")]
    Codec {
        tree: &'static str,
        source: CodecError,
    },
    #[error("transaction aborted: {0}")]
    Aborted(String),
}

/// Every database error passes here: an I/O error stops the node (see
/// [`stop_if_the_disk_failed`]).
impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        stop_if_the_disk_failed(&e);
        StoreError::Sled(e)
    }
}

/// A node whose disk failed under it (full, gone, read-only) stops at once: sled keeps
/// the first I/O error and fails every later write, so the node could never store
/// anything again until it starts over. What it could not flush was never
/// acknowledged; on restart (once the disk has room) it goes on from what is on disk.
fn stop_if_the_disk_failed(e: &sled::Error) {
    if let sled::Error::Io(io) = e {
        tracing::error!("the disk failed ({io}): this node stops now; what it could not store was not acknowledged; start it again once the disk has room");
        eprintln!("the disk failed ({io}): the node stops");
        std::process::exit(74);
    }
}

/// The node's database.
#[derive(Clone)]
pub struct Db {
    db: sled::Db,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let db = sled::Config::new().path(path).open()?;
        Ok(Db { db })
    }

    /// Opens (creating if needed) the tree `name` holding values of type `V`.
    pub fn tree<V>(&self, name: &'static str) -> Result<Tree<V>, StoreError> {
        Ok(Tree {
            name,
            tree: self.db.open_tree(name)?,
            _value: PhantomData,
        })
    }

    /// Waits until everything written so far is on disk. Acknowledge nothing durable
    /// before this returns.
    pub async fn flush(&self) -> Result<(), StoreError> {
        // An I/O error stops the node in `StoreError::from`.
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn raw(&self) -> &sled::Db {
        &self.db
    }
}

/// A sled tree whose values are `V`.
pub struct Tree<V> {
    name: &'static str,
    tree: sled::Tree,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for Tree<V> {
    fn clone(&self) -> Self {
        Tree {
            name: self.name,
            tree: self.tree.clone(),
            _value: PhantomData,
        }
    }
}

impl<V: Serialize + DeserializeOwned> Tree<V> {
    pub fn encode(&self, value: &V) -> Result<Vec<u8>, StoreError> {
        encode_stored(value).map_err(|source| StoreError::Codec {
            tree: self.name,
            source,
        })
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<V, StoreError> {
        decode_stored(bytes).map_err(|source| StoreError::Codec {
            tree: self.name,
            source,
        })
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<V>, StoreError> {
        match self.tree.get(key)? {
            Some(bytes) => Ok(Some(self.decode(&bytes)?)),
            None => Ok(None),
        }
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: &V) -> Result<(), StoreError> {
        let bytes = self.encode(value)?;
        self.tree.insert(key.as_ref(), bytes)?;
        Ok(())
    }

    /// Inserts only if the key is absent; returns false if it was present.
    pub fn insert_new(&self, key: impl AsRef<[u8]>, value: &V) -> Result<bool, StoreError> {
        let bytes = self.encode(value)?;
        let swapped =
            self.tree
                .compare_and_swap(key.as_ref(), None as Option<&[u8]>, Some(bytes))?;
        Ok(swapped.is_ok())
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        self.tree.remove(key)?;
        Ok(())
    }

    pub fn contains(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key)?)
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = Result<(Vec<u8>, V), StoreError>> + '_ {
        self.tree.iter().map(move |r| {
            let (k, v) = r?;
            Ok((k.to_vec(), self.decode(&v)?))
        })
    }

    /// Entries whose key starts with `prefix`.
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, V), StoreError>> + '_ {
        self.tree.scan_prefix(prefix).map(move |r| {
            let (k, v) = r?;
            Ok((k.to_vec(), self.decode(&v)?))
        })
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    pub fn raw(&self) -> &sled::Tree {
        &self.tree
    }
}

/// Writes gathered for several trees, stored together in one transaction.
#[derive(Default)]
pub struct WriteSet {
    /// `(tree index, key, value)`; `None` removes the key.
    writes: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteSet {
    pub fn put(&mut self, tree: usize, key: impl AsRef<[u8]>, value: Vec<u8>) {
        self.writes.push((tree, key.as_ref().to_vec(), Some(value)));
    }

    pub fn remove(&mut self, tree: usize, key: impl AsRef<[u8]>) {
        self.writes.push((tree, key.as_ref().to_vec(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Stores every write in one transaction over `trees` (indexed as in `put`).
    pub fn commit(&self, trees: &[&sled::Tree]) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        trees
            .transaction(|views| {
                for (i, key, value) in &self.writes {
                    let Some(view) = views.get(*i) else {
                        return sled::transaction::abort(());
                    };
                    match value {
                        Some(v) => {
                            view.insert(key.as_slice(), v.as_slice())?;
                        }
                        None => {
                            view.remove(key.as_slice())?;
                        }
                    }
                }
                Ok(())
            })
            .map_err(transaction_error)
    }
}

/// Turns a failed sled transaction into a [`StoreError`].
pub fn transaction_error(e: sled::transaction::TransactionError<()>) -> StoreError {
    match e {
        sled::transaction::TransactionError::Storage(e) => StoreError::from(e),
        sled::transaction::TransactionError::Abort(()) => StoreError::Aborted("aborted".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn typed_values_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            let t: Tree<(String, u32)> = db.tree("things").unwrap();
            t.insert(b"a", &("one".into(), 1)).unwrap();
            assert!(!t.insert_new(b"a", &("two".into(), 2)).unwrap());
            assert!(t.insert_new(b"b", &("two".into(), 2)).unwrap());
            db.flush().await.unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let t: Tree<(String, u32)> = db.tree("things").unwrap();
        assert_eq!(t.get(b"a").unwrap(), Some(("one".into(), 1)));
        assert_eq!(t.len(), 2);
        let keys: Vec<Vec<u8>> = t.entries().map(|r| r.unwrap().0).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[tokio::test]
    async fn an_unreadable_value_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let t: Tree<u64> = db.tree("n").unwrap();
        t.raw().insert(b"x", &[9u8, 1, 2][..]).unwrap();
        let err = t.get(b"x").unwrap_err().to_string();
        assert!(err.contains("unsupported message version 9"), "{err}");
    }
}
