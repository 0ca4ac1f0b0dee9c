//! Locks that outlive a panic: every mutex in this crate guards data that stays consistent
//! between statements (a map insert, a counter), so a panic elsewhere while it was held does
//! not make the data unusable, and a poisoned lock must not take the process's calls down too.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, whether or not a thread panicked while holding it.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
