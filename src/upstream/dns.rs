//! How the upstream client finds a host's addresses, and which of them a redirect may lead to.
//!
//! Every connection the client makes resolves its host through `Guard`, the connector's
//! resolver. The upstream's own host and the token realm hosts its configuration names resolve
//! as the DNS says; any other name is a redirect's target, and of its addresses only those a
//! redirect may lead to reach the connector. The check is made on the very addresses connected
//! to, so no second lookup (DNS rebinding) can slip another in between. An address written in a
//! URL is never resolved; `redirect::check_redirect` judges it by the same rules.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::Uri;
use hyper_util::client::legacy::connect::dns::Name;

/// How the upstream client turns host names into addresses.
#[derive(Debug, Clone, Default)]
pub enum Dns {
    /// The system's resolver (`getaddrinfo`: `/etc/hosts`, then DNS).
    #[default]
    System,
    /// These names and addresses, in order, and no other name: for tests and embedders whose
    /// names must not depend on the machine's DNS.
    Fixed(Vec<(String, IpAddr)>),
}

impl Dns {
    async fn lookup(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        let found: Vec<IpAddr> = match self {
            Dns::System => tokio::net::lookup_host((name, 0)).await?.map(|a| a.ip()).collect(),
            Dns::Fixed(table) => (table.iter())
                .filter(|(known, _)| known.eq_ignore_ascii_case(name))
                .map(|(_, ip)| *ip)
                .collect(),
        };
        if found.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no address"));
        }
        Ok(found)
    }
}

/// Where an address leads, as far as a redirect is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    Outward,
    /// This machine or a private network: loopback, unspecified, RFC 1918, shared (CGNAT)
    /// and IPv6 unique local addresses.
    Inward,
    /// Where a cloud's metadata service answers (169.254.169.254): never a redirect's target.
    LinkLocal,
}

pub(super) fn reach(ip: IpAddr) -> Reach {
    // The connector takes `::ffff:127.0.0.1` to 127.0.0.1.
    match ip.to_canonical() {
        IpAddr::V4(v4) if v4.is_link_local() => Reach::LinkLocal,
        IpAddr::V4(v4) if v4.is_loopback() || v4.is_unspecified() || v4.is_private() => Reach::Inward,
        IpAddr::V4(v4) if v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 => Reach::Inward,
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Reach::LinkLocal,
        IpAddr::V6(v6) if v6.is_loopback() || v6.is_unspecified() => Reach::Inward,
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => Reach::Inward,
        _ => Reach::Outward,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot resolve {name}: {source}")]
    Lookup { name: String, source: io::Error },
    #[error("refused a redirect to {name}: it resolves only to {}", described(.refused))]
    Refused { name: String, refused: Vec<IpAddr> },
}

fn described(refused: &[IpAddr]) -> String {
    let why = |ip: &IpAddr| match reach(*ip) {
        Reach::LinkLocal => "link-local",
        _ => "loopback or private, where the upstream is not",
    };
    let each: Vec<String> = refused.iter().map(|ip| format!("{ip} ({})", why(ip))).collect();
    each.join(", ")
}

/// The resolver the upstream client connects through (see the module's doc).
#[derive(Clone)]
pub(crate) struct Guard(Arc<Inner>);

struct Inner {
    dns: Dns,
    /// The upstream's host, a name or an address.
    upstream: String,
    /// Names resolved as they are: the upstream's and its named token realms'.
    trusted: Vec<String>,
}

impl Guard {
    pub(crate) fn new(dns: Dns, base: &Uri, realm_hosts: &[String]) -> Guard {
        let host = base.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
        let trusted = std::iter::once(host.to_owned())
            .chain(realm_hosts.iter().cloned())
            .collect();
        Guard(Arc::new(Inner {
            dns,
            upstream: host.to_owned(),
            trusted,
        }))
    }

    /// The addresses a connection to `name` may use.
    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, Error> {
        let found = (self.0.dns.lookup(name).await).map_err(|source| Error::Lookup {
            name: name.to_owned(),
            source,
        })?;
        if self.0.trusted.iter().any(|host| host.eq_ignore_ascii_case(name)) {
            return Ok(found);
        }
        // The upstream is looked up only for a target that resolves inward, which is rare.
        let inward = found.iter().any(|ip| reach(*ip) == Reach::Inward) && self.upstream_inward().await;
        admit(name, found, inward)
    }

    /// Whether the upstream itself is on this machine or a private network, so that its
    /// redirects may lead there too: its address, or any address its name resolves to.
    pub(super) async fn upstream_inward(&self) -> bool {
        let host = &self.0.upstream;
        let addresses = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.0.dns.lookup(host).await.unwrap_or_default(),
        };
        addresses.into_iter().any(|ip| reach(ip) == Reach::Inward)
    }
}

/// Of a redirect target's addresses, those it may lead to: never a link-local one, and a
/// loopback or private one only when the upstream is itself inward. None left is a refusal.
fn admit(name: &str, found: Vec<IpAddr>, upstream_inward: bool) -> Result<Vec<IpAddr>, Error> {
    let (kept, refused): (Vec<IpAddr>, Vec<IpAddr>) = (found.into_iter()).partition(|ip| match reach(*ip) {
        Reach::Outward => true,
        Reach::Inward => upstream_inward,
        Reach::LinkLocal => false,
    });
    if kept.is_empty() {
        return Err(Error::Refused {
            name: name.to_owned(),
            refused,
        });
    }
    if !refused.is_empty() {
        let refused = described(&refused);
        tracing::warn!(%name, %refused, "a redirect's target also resolves where it may not lead; not used");
    }
    Ok(kept)
}

impl tower_service::Service<Name> for Guard {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Self::Response, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.clone();
        Box::pin(async move {
            let addresses = guard.addresses(name.as_str()).await?;
            // Port 0: the connector puts in the URL's port.
            let addresses: Vec<SocketAddr> = addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(addresses.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use tower_service::Service as _;

    use super::*;

    #[test]
    fn where_addresses_lead() {
        let check = |ip: &str, expected: Reach| {
            assert_eq!(reach(ip.parse().expect("address")), expected, "{ip}");
        };
        for inward in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            check(inward, Reach::Inward);
        }
        for link_local in ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254"] {
            check(link_local, Reach::LinkLocal);
        }
        for outward in [
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2001:4860::8888",
            "198.51.100.7",
        ] {
            check(outward, Reach::Outward);
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    /// A guard for `base` with realm host `auth.example`, over a fixed table standing in for DNS.
    fn guard(base: &'static str) -> Guard {
        let table = [
            ("registry.example", "203.0.113.10"),
            ("auth.example", "10.0.0.9"),
            ("cdn.example", "198.51.100.7"),
            ("metadata.example", "169.254.169.254"),
            ("internal.example", "10.0.0.5"),
            ("mixed.example", "10.0.0.5"),
            ("mixed.example", "198.51.100.7"),
            ("mixed.example", "169.254.169.254"),
            ("mapped.example", "::ffff:127.0.0.1"),
            ("registry.lan", "10.0.0.2"),
            ("storage.lan", "10.0.0.3"),
        ];
        let table = table
            .iter()
            .map(|(name, addr)| ((*name).to_owned(), ip(addr)))
            .collect();
        Guard::new(Dns::Fixed(table), &Uri::from_static(base), &["auth.example".to_owned()])
    }

    /// What the connector is handed for `name`, through the resolver interface it calls.
    async fn resolved(guard: &mut Guard, name: &str) -> Result<Vec<SocketAddr>, String> {
        let name: Name = name.parse().expect("name");
        match guard.call(name).await {
            Ok(addresses) => Ok(addresses.collect()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn at(addresses: &[&str]) -> Result<Vec<SocketAddr>, String> {
        Ok(addresses.iter().map(|a| SocketAddr::new(ip(a), 0)).collect())
    }

    #[tokio::test]
    async fn a_public_upstreams_redirects_connect_only_outward() {
        let mut public = guard("https://registry.example");
        assert!(!public.upstream_inward().await);
        assert_eq!(resolved(&mut public, "cdn.example").await, at(&["198.51.100.7"]));
        assert_eq!(
            resolved(&mut public, "mixed.example").await,
            at(&["198.51.100.7"]),
            "inward addresses are dropped, the others kept"
        );
        let refused = resolved(&mut public, "metadata.example").await.expect_err("link-local");
        assert_eq!(
            refused,
            "refused a redirect to metadata.example: it resolves only to 169.254.169.254 (link-local)"
        );
        for inward in ["internal.example", "mapped.example"] {
            let refused = resolved(&mut public, inward).await.expect_err(inward);
            assert!(
                refused.contains("(loopback or private, where the upstream is not)"),
                "{refused}"
            );
        }
        assert!(resolved(&mut public, "nowhere.example").await.is_err());
        // The names the configuration chose resolve as they are.
        assert_eq!(resolved(&mut public, "registry.example").await, at(&["203.0.113.10"]));
        assert_eq!(resolved(&mut public, "AUTH.example").await, at(&["10.0.0.9"]));
    }

    #[tokio::test]
    async fn an_inward_upstreams_redirects_may_stay_inward_but_never_reach_link_local() {
        let mut lan = guard("http://registry.lan:5000");
        assert!(lan.upstream_inward().await);
        assert_eq!(resolved(&mut lan, "storage.lan").await, at(&["10.0.0.3"]));
        assert_eq!(
            resolved(&mut lan, "mixed.example").await,
            at(&["10.0.0.5", "198.51.100.7"])
        );
        assert!(resolved(&mut lan, "metadata.example").await.is_err());

        let mut local = guard("http://127.0.0.1:5000");
        assert!(local.upstream_inward().await, "an address needs no lookup");
        assert_eq!(resolved(&mut local, "mapped.example").await, at(&["::ffff:127.0.0.1"]));

        let unresolvable = guard("https://nowhere.example");
        assert!(!unresolvable.upstream_inward().await);
    }
}
