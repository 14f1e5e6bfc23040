//! The names a server certificate covers: the ones given, plus what a client on this machine
//! or its LAN might dial (host name, loopback and interface addresses), and the names read
//! back from an existing certificate.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::SanType;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::Error;

/// The DNS names and IP addresses a server certificate covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Names {
    /// The given names plus what any client on this machine or its LAN might dial: localhost,
    /// the loopback addresses, the host name and the non-loopback interface addresses.
    pub fn local(hostnames: &[String], ips: &[IpAddr]) -> Names {
        let mut names = Names::default();
        names.dns.extend(hostnames.iter().map(|h| h.to_ascii_lowercase()));
        names.dns.insert("localhost".to_owned());
        if let Some(host) = machine_hostname() {
            names.dns.insert(host);
        }
        names.ips.extend(ips);
        names.ips.insert(IpAddr::from([127, 0, 0, 1]));
        names.ips.insert(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]));
        let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
        names.ips.extend(
            interfaces
                .iter()
                .map(|i| i.ip())
                .filter(|ip| !ip.is_loopback() && !is_link_local(ip)),
        );
        names
    }

    pub(super) fn union(&self, other: &Names) -> Names {
        Names {
            dns: &self.dns | &other.dns,
            ips: &self.ips | &other.ips,
        }
    }

    pub(super) fn sans(&self) -> Result<Vec<SanType>, Error> {
        let dns = self.dns.iter().map(|d| {
            let name = d.clone().try_into().map_err(|_| Error::BadName(d.clone()))?;
            Ok(SanType::DnsName(name))
        });
        let ips = self.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip)));
        dns.chain(ips).collect()
    }
}

/// The first name a client would use for this machine: its host name (`uname`'s nodename).
pub fn machine_hostname() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.trim().to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

pub(super) fn names_of(cert: &X509Certificate<'_>) -> Names {
    let mut names = Names::default();
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return names;
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => {
                names.dns.insert(d.to_string());
            }
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_from_bytes(bytes) {
                    names.ips.insert(ip);
                }
            }
            _ => {}
        }
    }
    names
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
