//! A redirect's `Location`, which the upstream (or any host it sends the mirror to) writes: a
//! redirect the mirror follows never leaves HTTPS, never reaches a link-local address (a
//! cloud's metadata service), and reaches a loopback or private one only when the upstream is
//! on one, however the address is written.
#![no_main]

use std::net::IpAddr;

use http::Uri;
use libfuzzer_sys::fuzz_target;
use regmirror::fuzzing::upstream_redirect;

fuzz_target!(|input: &str| {
    // The upstream's base URL on the first line, then the `Location` its answer carries.
    let Some((base, location)) = input.split_once('\n') else {
        return;
    };
    let Ok(base) = base.parse::<Uri>() else { return };
    if base.scheme().is_none() || base.host().is_none() {
        return;
    }
    let Ok(from) = format!("{base}v2/library/alpine/blobs/sha256:00").parse::<Uri>() else {
        return;
    };
    let Some(to) = upstream_redirect(&base, &from, location) else {
        return;
    };

    if from.scheme_str() == Some("https") {
        assert_eq!(to.scheme_str(), Some("https"), "{location:?} left HTTPS for {to}");
    }
    let Some(target) = address(&to) else { return };
    assert!(!link_local(target), "{location:?} led to {to}, link-local");
    if inside(target) {
        assert!(
            address(&base).is_some_and(inside),
            "{location:?} led inward to {to} from {base}"
        );
    }
});

/// The address a URI's host names, as the connection would reach it: an IPv4-mapped IPv6
/// address reaches the IPv4 one.
fn address(uri: &Uri) -> Option<IpAddr> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn inside(ip: IpAddr) -> bool {
    let private = match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64,
        IpAddr::V6(v6) => v6.segments()[0] & 0xfe00 == 0xfc00,
    };
    ip.is_loopback() || ip.is_unspecified() || private
}
