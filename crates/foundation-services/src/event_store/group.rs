//! What both writers (SQLite's thread, PostgreSQL's task) do with a group
//! of appends around its transaction: count a committed group, answer
//! each waiting append, fail a group that did not commit, and recognise a
//! retried batch. One copy, so the backends answer alike.

use std::sync::atomic::Ordering;

use mabeam_supervision_core::EventSeq;

use super::{
    EventStoreError,
    append::{Appended, Prepared},
    writer::{AppendRequest, Counters},
};

/// Each request's answer, in the group's order.
pub(crate) type Outcomes = Vec<Result<Vec<Appended>, EventStoreError>>;

/// A stored event as a retry is compared with it: its id, stream
/// version, stream, kind and idempotency key.
pub(crate) type StoredRow = (EventSeq, u64, String, String, Option<String>);

impl Counters {
    /// Counts a committed group of `size` events.
    pub(crate) fn committed(&self, size: usize) {
        self.appended.fetch_add(size as u64, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.largest_group.fetch_max(size as u64, Ordering::Relaxed);
    }
}

/// Answers each request of a committed group with its outcome; `stored`
/// first sees the events of each request that succeeded, with their
/// answers (duplicates included: `Appended::duplicate` says which).
pub(crate) fn answer(
    group: Vec<AppendRequest>,
    outcomes: Outcomes,
    mut stored: impl FnMut(Vec<Prepared>, &[Appended]),
) {
    for (request, outcome) in group.into_iter().zip(outcomes) {
        let AppendRequest { events, reply, .. } = request;
        if let Ok(appended) = &outcome {
            stored(events, appended);
        }
        let _ = reply.send(outcome);
    }
}

/// Fails every request of a group that did not commit: none is
/// acknowledged.
pub(crate) fn refuse(group: Vec<AppendRequest>, error: &EventStoreError) {
    for request in group {
        let _ = request.reply.send(Err(error.clone()));
    }
}

/// The answers to `request` if it retries a stored batch: `stored` holds
/// the events from its first key's event (`original`) on, and a batch's
/// ids are consecutive, so they must be as many, with the same stream,
/// kind and key at each position. `None`: not that batch.
pub(crate) fn retried_batch(
    original: EventSeq,
    request: &AppendRequest,
    stored: Vec<StoredRow>,
) -> Option<Vec<Appended>> {
    let same = stored.len() == request.events.len()
        && stored.iter().zip(&request.events).enumerate().all(
            |(offset, ((id, _, stream, kind, key), prepared))| {
                *id == original + offset as EventSeq
                    && *stream == prepared.event.stream
                    && *kind == prepared.event.kind
                    && *key == prepared.event.idempotency_key
            },
        );
    same.then(|| {
        stored
            .into_iter()
            .map(|(id, stream_version, ..)| Appended {
                id,
                stream_version,
                duplicate: true,
            })
            .collect()
    })
}
