//! systemd's readiness protocol (`Type=notify`): one datagram to `$NOTIFY_SOCKET` when the
//! listener is bound and the index loaded, another when shutdown begins. Outside systemd the
//! variable is unset and nothing happens.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

pub fn ready() {
    send("READY=1");
}

pub fn stopping() {
    send("STOPPING=1");
}

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&path.to_string_lossy(), state) {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}

/// `@name` is an abstract socket; anything else a path.
fn send_to(socket: &str, state: &str) -> io::Result<()> {
    let address = match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send_to(&path.to_string_lossy(), "READY=1").expect("send");
        let mut buf = [0; 32];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("regmirror-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).expect("addr")).expect("bind");
        send_to(&format!("@{name}"), "STOPPING=1").expect("send");
        let mut buf = [0; 32];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
