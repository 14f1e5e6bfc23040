//! Unit tests for the CA and server certificate lifecycle.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn names(dns: &[&str]) -> Names {
    Names {
        dns: dns.iter().map(|s| s.to_string()).collect(),
        ips: [IpAddr::from([127, 0, 0, 1])].into(),
    }
}

#[test]
fn creates_then_keeps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = CertDir::new(tmp.path().join("certs"));
    let first = ensure(&dir, &names(&["localhost", "mirror.lan"]), NamePolicy::Exact).expect("ensure");
    assert_eq!((first.ca, first.server), (Action::Created, Action::Created));
    let mode = fs::metadata(dir.ca_key()).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        fs::metadata(dir.server_key()).expect("key").permissions().mode() & 0o777,
        0o600
    );
    let ca_before = fs::read(dir.ca_key()).expect("read");
    let second = ensure(&dir, &names(&["localhost", "mirror.lan"]), NamePolicy::Exact).expect("ensure");
    assert_eq!((second.ca, second.server), (Action::Kept, Action::Kept));
    assert_eq!(fs::read(dir.ca_key()).expect("read"), ca_before);
}

#[test]
fn reissues_on_new_names_but_never_replaces_the_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = CertDir::new(tmp.path());
    ensure(&dir, &names(&["localhost"]), NamePolicy::Exact).expect("ensure");
    let ca = fs::read(dir.ca_cert()).expect("read");
    let report = ensure(&dir, &names(&["localhost", "gw.lan"]), NamePolicy::Exact).expect("ensure");
    assert_eq!((report.ca, report.server), (Action::Kept, Action::Reissued));
    assert_eq!(fs::read(dir.ca_cert()).expect("read"), ca);
    let text = describe(&dir).expect("describe");
    assert!(text.contains("gw.lan") && text.contains("127.0.0.1"), "{text}");
    // Starting the server with fewer names keeps the ones an administrator added.
    let report = ensure(&dir, &names(&["localhost"]), NamePolicy::KeepExisting).expect("ensure");
    assert_eq!(report.server, Action::Kept);
    assert!(report.names.dns.contains("gw.lan"));
}

#[test]
fn the_server_certificate_chains_to_the_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = CertDir::new(tmp.path());
    ensure(&dir, &names(&["localhost"]), NamePolicy::Exact).expect("ensure");
    let (ca_pem, _) = ca_pem_and_fingerprint(&dir).expect("ca");
    assert!(read_server(&dir, &ca_pem).expect("server").signed_by_ca);
    // A server certificate from another CA is replaced.
    let other = CertDir::new(tmp.path().join("other"));
    ensure(&other, &names(&["localhost"]), NamePolicy::Exact).expect("ensure");
    fs::copy(other.server_cert(), dir.server_cert()).expect("copy");
    let report = ensure(&dir, &names(&["localhost"]), NamePolicy::Exact).expect("ensure");
    assert_eq!(report.server, Action::Reissued);
    // And rustls accepts the pair.
    crate::tls::server_config(&dir.server_cert(), &dir.server_key(), None).expect("usable by rustls");
}

#[test]
fn refuses_a_ca_without_its_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = CertDir::new(tmp.path());
    ensure(&dir, &names(&["localhost"]), NamePolicy::Exact).expect("ensure");
    fs::remove_file(dir.ca_key()).expect("remove");
    assert!(matches!(
        ensure(&dir, &names(&["localhost"]), NamePolicy::Exact),
        Err(Error::CaWithoutKey(..))
    ));
}

#[test]
fn client_certificates_carry_the_name_and_chain_to_the_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = CertDir::new(tmp.path());
    assert!(matches!(issue_client(&dir, "ci"), Err(Error::NoCa(_))));
    ensure(&dir, &names(&["localhost"]), NamePolicy::Exact).expect("ensure");
    let (cert, key) = issue_client(&dir, "ci-runner").expect("issue");
    assert_eq!(fs::metadata(&key).expect("key").permissions().mode() & 0o777, 0o600);
    let der = read_der(&cert).expect("der");
    let chain = [rustls::pki_types::CertificateDer::from(der)];
    assert_eq!(crate::tls::client_name(Some(&chain)), Some("ci-runner".to_owned()));
    let (ca_pem, _) = ca_pem_and_fingerprint(&dir).expect("ca");
    let (_, ca) = parse_x509_pem(ca_pem.as_bytes()).expect("pem");
    let ca = ca.parse_x509().expect("x509");
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).expect("leaf");
    assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
    assert!(matches!(issue_client(&dir, "../escape"), Err(Error::BadName(_))));
}

#[test]
fn fingerprints_are_colon_hex() {
    let fp = fingerprint(b"x");
    assert_eq!(fp.len(), 32 * 3 - 1);
    assert!(fp.chars().all(|c| c == ':' || c.is_ascii_hexdigit()));
}
