//! Where the upstream's answers may send the mirror: the origin rule for credentials, the
//! resolution of a redirect's `Location`, and the places a redirect may not lead.

use http::Uri;

use super::dns::{reach, Guard, Reach};
use super::Error;

pub(super) fn same_origin(a: &Uri, b: &Uri) -> bool {
    a.scheme() == b.scheme() && a.host() == b.host() && a.port_u16() == b.port_u16()
}

/// Where a redirect may lead: never from HTTPS down to plain HTTP, never to a link-local
/// address (a cloud's metadata service), and to a loopback or private address only when the
/// upstream itself is on one (its address, or what its name resolves to). Here an address is
/// judged as written; a host name is judged as it resolves, by the `Guard` it connects through.
pub(crate) async fn check_redirect(guard: &Guard, from: &Uri, to: &Uri) -> Result<(), Error> {
    let refused = |why: &str| Err(Error::Protocol(format!("refused a redirect to {to}: {why}")));
    if from.scheme_str() == Some("https") && to.scheme_str() != Some("https") {
        return refused("it leaves HTTPS");
    }
    let Some(target) = ip_of(to) else { return Ok(()) };
    match reach(target) {
        Reach::Outward => Ok(()),
        Reach::LinkLocal => refused("a link-local address"),
        Reach::Inward if guard.upstream_inward().await => Ok(()),
        Reach::Inward => refused("a loopback or private address, where the upstream is not"),
    }
}

/// The address a URI's host names, as a connection reaches it: an IPv4-mapped IPv6 address
/// (`[::ffff:169.254.169.254]`) reaches the IPv4 one, so it is judged as that.
fn ip_of(uri: &Uri) -> Option<std::net::IpAddr> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Resolves a `Location` header, absolute or relative to the request it answers (RFC 3986).
pub(crate) fn resolve(base: &Uri, location: &str) -> Result<Uri, Error> {
    let bad = || Error::Protocol(format!("bad redirect location {location}"));
    let base = url::Url::parse(&base.to_string()).map_err(|_| bad())?;
    let target = base.join(location).map_err(|_| bad())?;
    target.as_str().parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Dns;

    /// Whether a redirect from `from` to `to` is followed for the upstream at `base`, whose
    /// name (if it has one) resolves through `dns`.
    async fn allowed(dns: &Dns, base: &'static str, from: &'static str, to: &'static str) -> bool {
        let guard = Guard::new(dns.clone(), &Uri::from_static(base), &[]);
        check_redirect(&guard, &Uri::from_static(from), &Uri::from_static(to))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn redirects_never_downgrade_or_turn_inward() {
        let dns = Dns::Fixed(vec![("registry.lan".to_owned(), [10, 0, 0, 2].into())]);
        let check = |base, from, to| allowed(&dns, base, from, to);
        let hub = "https://registry-1.docker.io";
        assert!(check(hub, "https://registry-1.docker.io/v2/x", "https://cdn.example/blob").await);
        assert!(!check(hub, "https://registry-1.docker.io/v2/x", "http://cdn.example/blob").await);
        assert!(
            !check(
                hub,
                "https://registry-1.docker.io/v2/x",
                "https://169.254.169.254/latest"
            )
            .await
        );
        assert!(!check(hub, "https://registry-1.docker.io/v2/x", "https://127.0.0.1:8080/x").await);
        assert!(!check(hub, "https://registry-1.docker.io/v2/x", "https://10.0.0.5/x").await);
        assert!(!check(hub, "https://registry-1.docker.io/v2/x", "https://[fe80::1]/x").await);
        assert!(!check(hub, "https://registry-1.docker.io/v2/x", "https://[fd00::1]/x").await);
        assert!(
            !check(hub, "https://registry-1.docker.io/v2/x", "https://[::ffff:127.0.0.1]/x").await,
            "a mapped IPv4 address is that address"
        );
        let lan = "http://10.0.0.2:5000";
        assert!(
            check(lan, "http://10.0.0.2:5000/v2/x", "http://10.0.0.3:9000/blob").await,
            "a LAN upstream's own storage"
        );
        assert!(
            check(
                "http://registry.lan:5000",
                "http://registry.lan:5000/v2/x",
                "http://10.0.0.3:9000/blob"
            )
            .await,
            "a LAN upstream known by its name"
        );
        assert!(
            check(
                "http://127.0.0.1:5000",
                "http://127.0.0.1:5000/v2/x",
                "http://127.0.0.1:5001/cdn"
            )
            .await
        );
        assert!(!check(lan, "http://10.0.0.2:5000/v2/x", "http://169.254.169.254/latest").await);
    }

    #[tokio::test]
    async fn ipv4_mapped_addresses_are_judged_as_the_ipv4_address_they_reach() {
        // No name resolves: only the addresses as written count.
        let check = |base: &'static str, to: &'static str| async move {
            let guard = Guard::new(Dns::Fixed(Vec::new()), &Uri::from_static(base), &[]);
            let from: Uri = format!("{base}/v2/x").parse().expect("uri");
            check_redirect(&guard, &from, &Uri::from_static(to)).await.is_ok()
        };
        let hub = "https://registry-1.docker.io";
        assert!(!check(hub, "https://[::ffff:169.254.169.254]/latest").await);
        assert!(!check(hub, "https://[::ffff:a9fe:a9fe]/latest").await);
        assert!(!check("http://registry.lan", "http://[::ffff:169.254.169.254]/latest").await);
        assert!(!check("http://registry.lan", "http://[::ffff:7f00:1]:8080/x").await);
        assert!(!check(hub, "https://[::ffff:10.0.0.5]/x").await);
        assert!(
            check(hub, "https://[::ffff:203.0.113.9]/blob").await,
            "a public address"
        );
        assert!(
            check("http://[::ffff:10.0.0.2]:5000", "http://10.0.0.3:9000/blob").await,
            "an upstream on a private address, however written"
        );
    }

    #[test]
    fn redirects_resolve() {
        let base: Uri = "https://registry-1.docker.io/v2/library/a/blobs/sha256:00"
            .parse()
            .expect("uri");
        let abs = resolve(&base, "https://cdn.example/x?sig=1").expect("absolute");
        assert_eq!(abs.host(), Some("cdn.example"));
        assert!(!same_origin(&abs, &base));
        let rel = resolve(&base, "/other?x=1").expect("relative");
        assert_eq!(rel.to_string(), "https://registry-1.docker.io/other?x=1");
        assert!(same_origin(&rel, &base));
        let relative = resolve(&base, "../x").expect("relative path");
        assert_eq!(relative.to_string(), "https://registry-1.docker.io/v2/library/a/x");
        assert!(resolve(&base, "http://[::1").is_err());
    }
}
