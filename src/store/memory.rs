//! [`MemoryStore`]: the store of `--in-memory`, tables in the process's memory and nothing on
//! disk. It keeps the same rules as the SQLite store (each operation atomic under one lock held
//! only for the operation, never across an await), so an actor restarted by its supervisor reloads
//! what it had, and a restart of the process starts empty, as before there was a store.
//!
//! Each table module keeps its rows in a private type of its own and reaches them through
//! `MemoryStore::with`; the store holds one value of each such type, created empty on first
//! use, so adding a table changes nothing here.

use super::error::StoreError;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Every table's rows, by the type that holds them.
type Tables = HashMap<TypeId, Box<dyn Any + Send>>;

#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    closed: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the table held in a `T`, atomically: one lock covers every table, held only
    /// while `f` runs.
    pub(super) fn with<T: Default + Send + 'static, R>(
        &self,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError("the store is closed".into()));
        }
        let mut tables = self
            .tables
            .lock()
            .map_err(|_| StoreError("the store's lock is poisoned".into()))?;
        let table = tables
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .ok_or_else(|| StoreError("a table is not held in its own type".into()))?;
        Ok(f(table))
    }

    /// Refuses every later operation: what `close` means for a store with nothing to flush.
    pub(super) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Numbers(Vec<u64>);

    #[derive(Default)]
    struct Names(Vec<String>);

    #[test]
    fn each_table_type_is_its_own_table_until_the_store_is_closed() {
        let store = MemoryStore::new();
        store.with(|t: &mut Numbers| t.0.push(7)).unwrap();
        store
            .with(|t: &mut Names| t.0.push("seven".into()))
            .unwrap();
        assert_eq!(store.with(|t: &mut Numbers| t.0.clone()).unwrap(), [7]);
        assert_eq!(store.with(|t: &mut Names| t.0.len()).unwrap(), 1);
        store.mark_closed();
        assert!(store.with(|t: &mut Numbers| t.0.len()).is_err());
    }
}
