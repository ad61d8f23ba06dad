//! The places `max_children` bounds: one per child running, waiting for its
//! restart, or being started by a caller. Counted in an atomic shared by
//! the handles and the actor, so `start_child` reserves its place without a
//! round trip to the actor.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::SupervisorError;

/// The count of places taken, and the bound.
#[derive(Debug)]
pub(super) struct Places {
    max: Option<usize>,
    taken: AtomicUsize,
}

impl Places {
    pub(super) fn new(max: Option<usize>) -> Self {
        Places {
            max,
            taken: AtomicUsize::new(0),
        }
    }

    /// Takes a place for a child about to start, or fails with
    /// [`SupervisorError::MaxChildren`].
    pub(super) fn reserve(&self) -> Result<Reservation<'_>, SupervisorError> {
        match self.max {
            None => {
                self.taken.fetch_add(1, Ordering::Relaxed);
            }
            Some(max) => {
                self.taken
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .map_err(|_| SupervisorError::MaxChildren(max))?;
            }
        }
        Ok(Reservation {
            places: self,
            kept: false,
        })
    }

    /// Gives one place back: its child stopped for good.
    pub(super) fn release(&self) {
        self.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place reserved by a caller's `start_child`: given back when dropped,
/// unless the child was handed over to the supervisor, which then owns the
/// place.
pub(super) struct Reservation<'a> {
    places: &'a Places,
    kept: bool,
}

impl Reservation<'_> {
    /// The supervisor took the child: the place is its now.
    pub(super) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.places.release();
        }
    }
}
