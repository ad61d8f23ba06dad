//! Unique names: register, unregister, look up, list, and the names a
//! process holds.

use std::sync::{Arc, atomic::Ordering};

use kameo::actor::ActorId;
use mabeam_supervision_core::{
    ExitReason, Metadata, Namespace, ProcessHandle, RegistryError, RegistryEvent, Stopper,
    WeakProcessHandle, events,
};

use super::{ProcessRegistry, check_metadata, exit_now, live, outcome, shared};
use crate::{
    records::Kind,
    subscribers::About,
    table::{Meta, Name, NameEntry, NsTable},
};

impl ProcessRegistry {
    /// Registers `handle` under `name` in `namespace` with `metadata` (a
    /// JSON object, or `null` for none).
    ///
    /// - `Ok` if the name was free, or held by a process that is not live
    ///   (it is taken over), or already held by this same process (the
    ///   metadata is replaced and `Registered` is emitted again);
    /// - [`RegistryError::AlreadyRegistered`] with the holder if another
    ///   live process holds it;
    /// - [`RegistryError::InvalidMetadata`] if `metadata` is not an object
    ///   or `null`;
    /// - [`RegistryError::NotAlive`] if `handle` is not live.
    pub fn register(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
    ) -> Result<(), RegistryError> {
        let result = check_metadata(&metadata)
            .and_then(|()| self.insert(namespace, name, &handle, Meta::own(metadata), None, true));
        self.emit(events::REGISTRY_REGISTER, namespace, outcome(&result));
        result
    }

    /// [`register`](Self::register), with the [`Stopper`] that
    /// [`cleanup`](Self::cleanup) uses to stop this process (for a
    /// supervised process: through its supervisor).
    pub fn register_with_stopper(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
        stopper: Stopper,
    ) -> Result<(), RegistryError> {
        let result = check_metadata(&metadata).and_then(|()| {
            self.insert(
                namespace,
                name,
                &handle,
                Meta::own(metadata),
                Some(&stopper),
                true,
            )
        });
        self.emit(events::REGISTRY_REGISTER, namespace, outcome(&result));
        result
    }

    /// [`register`](Self::register) for an owner that releases the name
    /// itself with [`unregister_if`](Self::unregister_if) when the process
    /// stops: no cleanup task watches the process, and `metadata` is
    /// shared (one per kind of process, not one JSON object per name).
    /// Until released, a stopped holder is treated as any stopped holder
    /// (never returned by lookups, its name free to take over).
    ///
    /// An owned name is not in the per-process index either (it weighs
    /// only its entry, one 64-byte bucket of the namespace's map):
    /// [`keys`](Self::keys) finds it by a scan of the namespace instead,
    /// [`tracked_processes`](Self::tracked_processes) (the index's size)
    /// does not count it, and the cleanup after a process that also holds
    /// watched keys leaves it to its owner. Registering the same process
    /// under the
    /// same name again with [`register`](Self::register) makes the name a
    /// watched one.
    pub fn register_owned(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Arc<Metadata>,
    ) -> Result<(), RegistryError> {
        let result = check_metadata(&metadata).and_then(|()| {
            self.insert(
                namespace,
                name,
                &handle,
                Meta::shared(metadata),
                None,
                false,
            )
        });
        self.emit(events::REGISTRY_REGISTER, namespace, outcome(&result));
        result
    }

    fn insert(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: &ProcessHandle,
        metadata: Meta,
        stopper: Option<&Stopper>,
        watched: bool,
    ) -> Result<(), RegistryError> {
        if !handle.is_alive() {
            return Err(RegistryError::NotAlive);
        }
        let table = self.table_or_new(namespace);
        let _changing = table.changing();
        if !watched {
            table.had_owned.store(true, Ordering::Relaxed);
        }
        // The event, made before the entry moves into the map, and only
        // if someone subscribes to this namespace; sent once it is in.
        let registered = |name: &str, entry: &NameEntry| {
            (table.subscribers.len() > 0).then(|| RegistryEvent::Registered {
                name: Arc::from(name),
                handle: entry.handle.clone(),
                metadata: Metadata::clone(&entry.metadata),
            })
        };
        let send = |event: Option<RegistryEvent>| {
            if let Some(event) = event {
                table.subscribers.send(About::Name(name), || event);
            }
        };
        let _writing = table.names.lock(name);
        let guard = table.names.guard();
        let names = &table.names.map;
        let entry = NameEntry {
            handle: handle.downgrade(),
            metadata,
        };
        match names.get(name, &guard) {
            Some(current) if current.handle == *handle => {
                // The same process again: new metadata, and this handle (it
                // may outlive the one registered before).
                let event = registered(name, &entry);
                names.insert(Name::from(name), entry, &guard);
                if let Some(stopper) = stopper {
                    // Re-registering adds no key, but may bring a new
                    // stopper.
                    self.inner.records.set_stopper(handle.id(), stopper);
                }
                if watched
                    && !self
                        .inner
                        .records
                        .has(handle.id(), namespace, Kind::Name, name)
                {
                    // An owned name registered again as a watched one.
                    self.track(namespace, Kind::Name, name, handle, stopper, true);
                }
                send(event);
                return Ok(());
            }
            Some(current) => {
                if let Some(holder) = live(&current.handle) {
                    return Err(RegistryError::AlreadyRegistered {
                        name: Arc::from(name),
                        holder,
                    });
                }
                // The holder is stopping or stopped: the name is free.
                let exit = exit_now(&current.handle);
                self.released_name(namespace, &table, name, &current.handle, exit);
                let event = registered(name, &entry);
                names.insert(Name::from(name), entry, &guard);
                send(event);
                self.track(namespace, Kind::Name, name, handle, stopper, watched);
            }
            None => {
                let event = registered(name, &entry);
                names.insert(Name::from(name), entry, &guard);
                send(event);
                self.track(namespace, Kind::Name, name, handle, stopper, watched);
            }
        }
        Ok(())
    }

    /// Frees `name` and returns its former holder;
    /// [`RegistryError::NotRegistered`] if no live process held it (a
    /// holder that is not live is removed all the same).
    pub fn unregister(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<ProcessHandle, RegistryError> {
        let result = self
            .remove_name(namespace, name, |_| true)
            .map_err(|err| match err {
                // A holder that was not live did not hold the name.
                RegistryError::NotAlive => RegistryError::NotRegistered(Arc::from(name)),
                other => other,
            });
        self.emit(events::REGISTRY_UNREGISTER, namespace, outcome(&result));
        result
    }

    /// Frees `name` only if `handle` holds it (alive or not); returns
    /// whether it did. A name taken over by another process is left alone,
    /// so an incarnation that stops can never free its successor's name.
    pub fn unregister_if(&self, namespace: &Namespace, name: &str, handle: &ProcessHandle) -> bool {
        let result = self.remove_name(namespace, name, |holder| holder == handle);
        let freed = match &result {
            Ok(_) => true,
            // Held by this handle, which is no longer live: freed all the
            // same.
            Err(RegistryError::NotAlive) => true,
            Err(_) => false,
        };
        self.emit(
            events::REGISTRY_UNREGISTER,
            namespace,
            if freed { "ok" } else { "not_registered" },
        );
        freed
    }

    /// Removes `name` if its holder passes `whose`: the holder if it was
    /// live, [`RegistryError::NotAlive`] if it was not (removed all the
    /// same), [`RegistryError::NotRegistered`] if nothing was removed.
    fn remove_name(
        &self,
        namespace: &Namespace,
        name: &str,
        whose: impl Fn(&WeakProcessHandle) -> bool,
    ) -> Result<ProcessHandle, RegistryError> {
        let not_registered = || RegistryError::NotRegistered(Arc::from(name));
        let table = self.table(namespace).ok_or_else(not_registered)?;
        let _changing = table.changing();
        let _writing = table.names.lock(name);
        let guard = table.names.guard();
        // papaya may call the predicate more than once (it retries while
        // the map resizes), so it only decides: what follows a removal
        // (the event, the record) happens once, on the entry removed.
        let removed = table
            .names
            .map
            .remove_if(name, |_, entry| whose(&entry.handle), &guard)
            .ok()
            .flatten();
        let holder = removed.and_then(|(key, entry)| {
            let holder = live(&entry.handle);
            // Only an event carries the exit: none is made without a
            // subscriber (an owner releasing its name as it stops).
            let exit = match holder {
                None if table.subscribers.len() > 0 => exit_now(&entry.handle),
                _ => None,
            };
            self.released_name(namespace, &table, key, &entry.handle, exit);
            holder
        });
        match (removed, holder) {
            (Some(_), Some(holder)) => Ok(holder),
            (Some(_), None) => Err(RegistryError::NotAlive),
            (None, _) => Err(not_registered()),
        }
    }

    /// Tells subscribers that `holder` no longer holds `name` and removes
    /// the key from its process record; the caller removes or replaces the
    /// entry.
    pub(super) fn released_name(
        &self,
        namespace: &Namespace,
        table: &NsTable,
        name: &str,
        holder: &WeakProcessHandle,
        exit: Option<ExitReason>,
    ) {
        table
            .subscribers
            .send(About::Name(name), || RegistryEvent::Unregistered {
                name: Arc::from(name),
                handle: holder.clone(),
                exit,
            });
        self.inner
            .records
            .remove(holder.id(), namespace, Kind::Name, name);
    }

    /// The live holder of `name`.
    pub fn lookup(&self, namespace: &Namespace, name: &str) -> Option<ProcessHandle> {
        self.with_lookup(namespace, name, |holder, _| holder.upgrade())
            .flatten()
            .filter(ProcessHandle::is_alive)
    }

    /// Runs `f` on the live holder of `name` and its metadata, borrowed
    /// from the registry, and returns what it returns; `None` if no live
    /// process holds the name. For callers that need no owned handle
    /// (read the id, compare, send through the weak handle): it writes
    /// nothing shared, takes no lock and no reference count, so lookups
    /// from many threads never contend. `f` runs while the registry may be
    /// changing: the name may be unregistered meanwhile, as with any
    /// lookup. Keep it short (it delays the reclamation of replaced
    /// entries).
    pub fn with_lookup<R>(
        &self,
        namespace: &Namespace,
        name: &str,
        f: impl FnOnce(&WeakProcessHandle, &Metadata) -> R,
    ) -> Option<R> {
        let table = self.table(namespace)?;
        let guard = table.names.guard();
        let entry = table.names.map.get(name, &guard)?;
        entry
            .handle
            .is_alive()
            .then(|| f(&entry.handle, &entry.metadata))
    }

    /// The id of the live holder of `name` (OTP's `whereis`): a value to
    /// compare or log, read without a lock or a reference count (see
    /// [`with_lookup`](Self::with_lookup)).
    pub fn whereis(&self, namespace: &Namespace, name: &str) -> Option<ActorId> {
        self.with_lookup(namespace, name, |holder, _| holder.id())
    }

    /// The live holder of `name` and its metadata.
    pub fn lookup_with_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Option<(ProcessHandle, Metadata)> {
        self.with_lookup(namespace, name, |holder, metadata| {
            live(holder).map(|handle| (handle, Metadata::clone(metadata)))
        })
        .flatten()
    }

    /// The metadata of `name`, if a live process holds it.
    pub fn metadata(&self, namespace: &Namespace, name: &str) -> Option<Metadata> {
        self.lookup_with_metadata(namespace, name)
            .map(|(_, metadata)| metadata)
    }

    /// Replaces the metadata of `name`: [`RegistryError::NotRegistered`] if
    /// no live process holds it, [`RegistryError::InvalidMetadata`] if
    /// `metadata` is not an object or `null`. Subscribers are not told
    /// (there is no such event); telemetry is.
    pub fn update_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
        metadata: Metadata,
    ) -> Result<(), RegistryError> {
        let result = check_metadata(&metadata).and_then(|()| {
            let not_registered = || RegistryError::NotRegistered(Arc::from(name));
            let table = self.table(namespace).ok_or_else(not_registered)?;
            let _writing = table.names.lock(name);
            let guard = table.names.guard();
            let entry = table
                .names
                .map
                .get(name, &guard)
                .filter(|entry| entry.handle.is_alive())
                .ok_or_else(not_registered)?;
            let entry = NameEntry {
                handle: entry.handle.clone(),
                metadata: Meta::own(metadata),
            };
            table.names.map.insert(Name::from(name), entry, &guard);
            Ok(())
        });
        self.emit(
            events::REGISTRY_UPDATE_METADATA,
            namespace,
            outcome(&result),
        );
        result
    }

    /// Every name of `namespace` held by a live process, with holder and
    /// metadata, sorted by name.
    pub fn list(&self, namespace: &Namespace) -> Vec<(Arc<str>, ProcessHandle, Metadata)> {
        self.find(namespace, |_, _| true)
    }

    /// The names of `namespace` whose live holder's metadata satisfies
    /// `predicate` (called with the name and the metadata), sorted by name.
    pub fn find(
        &self,
        namespace: &Namespace,
        predicate: impl FnMut(&str, &Metadata) -> bool,
    ) -> Vec<(Arc<str>, ProcessHandle, Metadata)> {
        match self.table(namespace) {
            Some(table) => names_of(&table, predicate),
            None => Vec::new(),
        }
    }

    /// How many names of `namespace` live processes hold.
    pub fn count(&self, namespace: &Namespace) -> usize {
        self.table(namespace).map_or(0, |table| {
            let guard = table.names.guard();
            table
                .names
                .map
                .values(&guard)
                .filter(|entry| entry.handle.is_alive())
                .count()
        })
    }

    /// The names `handle` holds in `namespace`, sorted (Elixir's
    /// `Registry.keys/2`), owned ones ([`register_owned`](Self::register_owned))
    /// included; empty if it is not live. O(names it holds), from the
    /// per-process index; in a namespace where owned names were ever
    /// registered, O(names of the namespace), as owned names are in no
    /// index.
    pub fn keys(&self, namespace: &Namespace, handle: &ProcessHandle) -> Vec<Arc<str>> {
        if !handle.is_alive() {
            return Vec::new();
        }
        match self.table(namespace) {
            // Owned names are in no index: look at every name.
            Some(table) if table.had_owned.load(Ordering::Relaxed) => {
                let guard = table.names.guard();
                let mut keys: Vec<_> = table
                    .names
                    .map
                    .iter(&guard)
                    .filter(|(_, entry)| entry.handle == *handle)
                    .map(|(name, _)| shared(name))
                    .collect();
                keys.sort_unstable();
                keys
            }
            _ => self.inner.records.keys(handle.id(), namespace, Kind::Name),
        }
    }
}

/// The names of `table` whose live holder's metadata satisfies
/// `predicate`, sorted by name.
pub(super) fn names_of(
    table: &NsTable,
    mut predicate: impl FnMut(&str, &Metadata) -> bool,
) -> Vec<(Arc<str>, ProcessHandle, Metadata)> {
    let guard = table.names.guard();
    let mut found: Vec<_> = table
        .names
        .map
        .iter(&guard)
        .filter(|(name, entry)| predicate(name, &entry.metadata))
        .filter_map(|(name, entry)| {
            live(&entry.handle)
                .map(|handle| (shared(name), handle, Metadata::clone(&entry.metadata)))
        })
        .collect();
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    found
}
