//! systemd's readiness protocol (`Type=notify`): one message to `$NOTIFY_SOCKET` when the
//! listener is bound and the index loaded, another when shutdown begins. Outside systemd the
//! variable is unset and nothing happens. The datagram itself is the `sd-notify` crate's.

use sd_notify::NotifyState;

pub fn ready() {
    send(NotifyState::Ready);
}

pub fn stopping() {
    send(NotifyState::Stopping);
}

/// A lost notification is logged, not fatal: systemd then times the start out itself.
fn send(state: NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(std::slice::from_ref(&state)) {
        tracing::warn!(error = %e, %state, "cannot notify systemd");
    }
}
