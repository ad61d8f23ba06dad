//! The [`Registry`] contract, met by forwarding each call to the
//! [`ProcessRegistry`] method of the same name.

use std::sync::Arc;

use kameo::actor::ActorId;
use mabeam_supervision_core::{
    Metadata, Namespace, ProcessHandle, Registry, RegistryError, RegistryEvents, Stopper,
    Subscription, Topic, WeakProcessHandle,
};

use super::ProcessRegistry;

impl Registry for ProcessRegistry {
    fn register(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::register(self, namespace, name, handle, metadata)
    }

    fn register_with_stopper(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
        stopper: Stopper,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::register_with_stopper(self, namespace, name, handle, metadata, stopper)
    }

    fn register_owned(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Arc<Metadata>,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::register_owned(self, namespace, name, handle, metadata)
    }

    fn unregister(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<ProcessHandle, RegistryError> {
        ProcessRegistry::unregister(self, namespace, name)
    }

    fn unregister_if(&self, namespace: &Namespace, name: &str, handle: &ProcessHandle) -> bool {
        ProcessRegistry::unregister_if(self, namespace, name, handle)
    }

    fn lookup(&self, namespace: &Namespace, name: &str) -> Option<ProcessHandle> {
        ProcessRegistry::lookup(self, namespace, name)
    }

    fn with_lookup(
        &self,
        namespace: &Namespace,
        name: &str,
        f: &mut dyn FnMut(&WeakProcessHandle, &Metadata),
    ) -> bool {
        ProcessRegistry::with_lookup(self, namespace, name, |holder, metadata| {
            f(holder, metadata)
        })
        .is_some()
    }

    fn whereis(&self, namespace: &Namespace, name: &str) -> Option<ActorId> {
        ProcessRegistry::whereis(self, namespace, name)
    }

    fn lookup_with_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Option<(ProcessHandle, Metadata)> {
        ProcessRegistry::lookup_with_metadata(self, namespace, name)
    }

    fn update_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
        metadata: Metadata,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::update_metadata(self, namespace, name, metadata)
    }

    fn list(&self, namespace: &Namespace) -> Vec<(Arc<str>, ProcessHandle, Metadata)> {
        ProcessRegistry::list(self, namespace)
    }

    fn count(&self, namespace: &Namespace) -> usize {
        ProcessRegistry::count(self, namespace)
    }

    fn join(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: ProcessHandle,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::join(self, namespace, group, handle)
    }

    fn leave(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: &ProcessHandle,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::leave(self, namespace, group, handle)
    }

    fn members(&self, namespace: &Namespace, group: &str) -> Vec<ProcessHandle> {
        ProcessRegistry::members(self, namespace, group)
    }

    fn leave_all(&self, namespace: &Namespace, handle: &ProcessHandle) -> usize {
        ProcessRegistry::leave_all(self, namespace, handle)
    }

    fn keys(&self, namespace: &Namespace, handle: &ProcessHandle) -> Vec<Arc<str>> {
        ProcessRegistry::keys(self, namespace, handle)
    }

    fn subscribe(&self, namespace: &Namespace) -> RegistryEvents {
        ProcessRegistry::subscribe(self, namespace)
    }

    fn subscribe_to(&self, namespace: &Namespace, topic: Topic) -> Subscription {
        ProcessRegistry::subscribe_to(self, namespace, topic)
    }
}

/// A registry handed where the contract is wanted (as
/// [`ChildSpec::registered_as`](mabeam_supervision_core::ChildSpec::registered_as)
/// wants it): the handle is already a cheap clone, so this wraps it once.
impl From<ProcessRegistry> for Arc<dyn Registry> {
    fn from(registry: ProcessRegistry) -> Self {
        Arc::new(registry)
    }
}

/// As `From<ProcessRegistry>`, for a borrowed handle (cloned).
impl From<&ProcessRegistry> for Arc<dyn Registry> {
    fn from(registry: &ProcessRegistry) -> Self {
        Arc::new(registry.clone())
    }
}
