//! Groups: join, leave (once, or every group at once), members.

use std::sync::Arc;

use mabeam_supervision_core::{Namespace, ProcessHandle, RegistryError, RegistryEvent, events};

use super::{ProcessRegistry, live, outcome};
use crate::{records::Kind, subscribers::About, table::NsTable};

impl ProcessRegistry {
    /// Adds `handle` to `group` (once more if it is a member already);
    /// [`RegistryError::NotAlive`] if it is not live.
    pub fn join(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: ProcessHandle,
    ) -> Result<(), RegistryError> {
        let result = if handle.is_alive() {
            let table = self.table_or_new(namespace);
            let _changing = table.changing();
            let mut members = table.groups.entry(Arc::from(group)).or_default();
            members.push(handle.downgrade());
            table
                .subscribers
                .send(About::Group(group), || RegistryEvent::Joined {
                    group: members.key().clone(),
                    handle: handle.downgrade(),
                });
            self.track(namespace, Kind::Group, members.key(), &handle, None, true);
            Ok(())
        } else {
            Err(RegistryError::NotAlive)
        };
        self.emit(events::REGISTRY_JOIN, namespace, outcome(&result));
        result
    }

    /// Removes one membership of `handle` in `group`;
    /// [`RegistryError::NotInGroup`] if it has none. A group left empty
    /// disappears.
    pub fn leave(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: &ProcessHandle,
    ) -> Result<(), RegistryError> {
        let left = match self.table(namespace) {
            Some(table) => {
                let _changing = table.changing();
                self.leave_group(namespace, &table, group, handle, false) > 0
            }
            None => false,
        };
        let result = if left {
            Ok(())
        } else {
            Err(RegistryError::NotInGroup(Arc::from(group)))
        };
        self.emit(events::REGISTRY_LEAVE, namespace, outcome(&result));
        result
    }

    /// Removes every membership of `handle` in every group of `namespace`
    /// at once (Erlang's `pg:leave/2` with all its groups); returns how
    /// many it removed, each with its `Left` event. O(keys the process has).
    pub fn leave_all(&self, namespace: &Namespace, handle: &ProcessHandle) -> usize {
        let Some(table) = self.table(namespace) else {
            return 0;
        };
        let _changing = table.changing();
        let groups = self.inner.records.keys(handle.id(), namespace, Kind::Group);
        let left: usize = groups
            .iter()
            .map(|group| self.leave_group(namespace, &table, group, handle, true))
            .sum();
        self.emit(
            events::REGISTRY_LEAVE,
            namespace,
            if left > 0 { "ok" } else { "not_in_group" },
        );
        left
    }

    /// Removes the latest membership of `handle` in `group` (every one if
    /// `all`), with their events; returns how many. Called with the change
    /// gate held.
    fn leave_group(
        &self,
        namespace: &Namespace,
        table: &NsTable,
        group: &str,
        handle: &ProcessHandle,
        all: bool,
    ) -> usize {
        let mut left = 0;
        let _ = table.groups.remove_if_mut(group, |key, members| {
            while let Some(at) = members.iter().rposition(|member| member == handle) {
                let member = members.remove(at);
                left += 1;
                table
                    .subscribers
                    .send(About::Group(group), || RegistryEvent::Left {
                        group: key.clone(),
                        handle: member,
                        exit: None,
                    });
                self.inner
                    .records
                    .remove(handle.id(), namespace, Kind::Group, key);
                if !all {
                    break;
                }
            }
            members.is_empty()
        });
        left
    }

    /// The live members of `group`, in join order, each as often as it
    /// joined.
    pub fn members(&self, namespace: &Namespace, group: &str) -> Vec<ProcessHandle> {
        let Some(table) = self.table(namespace) else {
            return Vec::new();
        };
        table.groups.get(group).map_or_else(Vec::new, |members| {
            members.iter().filter_map(live).collect()
        })
    }

    /// The groups of `namespace` with at least one live member, sorted.
    pub fn groups(&self, namespace: &Namespace) -> Vec<Arc<str>> {
        let Some(table) = self.table(namespace) else {
            return Vec::new();
        };
        let mut groups: Vec<_> = table
            .groups
            .iter()
            .filter(|group| group.iter().any(|member| member.is_alive()))
            .map(|group| group.key().clone())
            .collect();
        groups.sort_unstable();
        groups
    }

    /// The groups `handle` is a member of in `namespace`, sorted; empty if
    /// it is not live.
    pub fn groups_of(&self, namespace: &Namespace, handle: &ProcessHandle) -> Vec<Arc<str>> {
        if !handle.is_alive() {
            return Vec::new();
        }
        self.inner.records.keys(handle.id(), namespace, Kind::Group)
    }
}
