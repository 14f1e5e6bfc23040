//! Locking that outlives a panic: a panic while a lock was held poisons it, yet every critical
//! section here leaves its data consistent, so the lock is taken as it is.

use std::sync::{Mutex, MutexGuard};

pub trait LockExt<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
