//! The store for one request: a dry run's changes are undone when it drops.

use crate::store::Store;

/// The store for one request; a dry run's changes are undone when it drops.
pub(super) struct DryRun<'a> {
    store: tokio::sync::MutexGuard<'a, Store>,
    saved: Option<crate::store::Saved>,
}

impl<'a> DryRun<'a> {
    pub(super) fn new(mut store: tokio::sync::MutexGuard<'a, Store>, dry_run: bool) -> Self {
        let saved = dry_run.then(|| store.save());
        DryRun { store, saved }
    }
}

impl std::ops::Deref for DryRun<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl std::ops::DerefMut for DryRun<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

impl Drop for DryRun<'_> {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            self.store.restore(saved);
        }
    }
}
