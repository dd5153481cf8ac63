//! `store`: the plugin's key-value store, only with a store grant (its
//! directory is the runtime's choice, never the plugin's).

use wasmtime::component::Resource;

use super::HostState;
use crate::bindings::multus::plugin::store;
use crate::store::Transaction;
use crate::{HostError, WitError};

impl store::Host for HostState {
    fn open(&mut self) -> Result<Resource<Transaction>, WitError> {
        let Some(backend) = &self.store else {
            let e = HostError::Denied(format!(
                "plugin {:?} was granted no store",
                self.grant.plugin
            ));
            return Err(self.fail("store.open", e));
        };
        let txn = backend.open().map_err(|e| e.to_wit("store.open"))?;
        self.table
            .push(Transaction(txn))
            .map_err(|e| HostError::Io(e.to_string()).to_wit("store.open"))
    }
}

impl HostState {
    fn txn<T>(
        &mut self,
        r: &Resource<Transaction>,
        call: &str,
        f: impl FnOnce(&mut dyn crate::store::Txn) -> Result<T, HostError>,
    ) -> Result<T, WitError> {
        let t = self
            .table
            .get_mut(r)
            .map_err(|e| HostError::Invalid(e.to_string()).to_wit(call))?;
        let out = f(t.0.as_mut());
        out.map_err(|e| self.fail(call, e))
    }
}

impl store::HostTransaction for HostState {
    fn get(&mut self, r: Resource<Transaction>, key: String) -> Result<Option<String>, WitError> {
        self.txn(&r, "store.get", |t| t.get(&key))
    }
    fn insert(
        &mut self,
        r: Resource<Transaction>,
        key: String,
        value: String,
    ) -> Result<bool, WitError> {
        self.txn(&r, "store.insert", |t| t.insert(&key, &value))
    }
    fn put(
        &mut self,
        r: Resource<Transaction>,
        key: String,
        value: String,
    ) -> Result<(), WitError> {
        self.txn(&r, "store.put", |t| t.put(&key, &value))
    }
    fn remove(&mut self, r: Resource<Transaction>, key: String) -> Result<bool, WitError> {
        self.txn(&r, "store.remove", |t| t.remove(&key))
    }
    fn keys(&mut self, r: Resource<Transaction>) -> Result<Vec<String>, WitError> {
        self.txn(&r, "store.keys", |t| t.keys())
    }
    fn drop(&mut self, r: Resource<Transaction>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::multus::plugin::store::{Host as _, HostTransaction as _};
    use crate::state::{test_state as state, RecordingKernel};
    use crate::store::RecordingStore;

    #[test]
    fn store_is_denied_without_a_grant_and_recorded_with_one() {
        let mut s = state(None, RecordingKernel::default());
        let e = s.open().unwrap_err();
        assert!(e.msg.contains("no store"), "{}", e.msg);
        let rec = RecordingStore::default();
        let mut s = state(Some(rec.clone()), RecordingKernel::default());
        let t = s.open().unwrap();
        let t2 = Resource::new_borrow(t.rep());
        assert!(s
            .insert(t2, "10.0.0.2".into(), "cid\r\neth0".into())
            .unwrap());
        let t3 = Resource::new_borrow(t.rep());
        assert!(s.insert(t3, "../x".into(), "v".into()).is_err());
        crate::bindings::multus::plugin::store::HostTransaction::drop(&mut s, t).unwrap();
        assert_eq!(
            rec.ops.lock().unwrap().clone(),
            vec!["open", "insert 10.0.0.2=\"cid\\r\\neth0\""]
        );
    }
}
