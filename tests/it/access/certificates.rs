//! Client certificates from the mirror's own CA (mutual TLS): required, the common name is the
//! user; optional, beside htpasswd users.

use super::*;

/// A client certificate `NAME.cert`/`NAME.key` from the CA in `certs`.
fn client_certificate(certs: &CertDir, name: &str) -> (PathBuf, PathBuf) {
    certs::issue_client(certs, name).expect("issue a client certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_from_the_mirrors_ca_name_the_user() {
    let (hub, alpine, _) = hub().await;
    let mirror = Mirror::builder(&hub)
        .own_ca()
        .access(
            r#"
            client_certificates = "required"
            [[rules]]
            users = ["ci"]
            repos = ["docker.io/library/*"]
            "#,
        )
        .start()
        .await;
    let ca = mirror.certs().ca_cert();
    let manifest = "/v2/library/alpine/manifests/latest";
    let accept = [("accept", CONTAINERD_ACCEPT)];

    let without = mtls::client_config(&ca, None);
    let refused = mtls::handshake(mirror.addr(), without.clone()).await;
    let error = refused.err().unwrap_or_default();
    assert!(
        error.contains("CertificateRequired"),
        "refused in the handshake: {error}"
    );
    let refused = mtls::get(mirror.addr(), without, "/v2/", &[]).await;
    assert!(refused.is_err(), "no certificate, no HTTP: {refused:?}");

    let (cert, key) = client_certificate(&mirror.certs(), "ci");
    let ci = mtls::client_config(&ca, Some((&cert, &key)));
    assert_eq!(mtls::handshake(mirror.addr(), ci.clone()).await, Ok(()));
    let reply = mtls::get(mirror.addr(), ci.clone(), "/v2/", &[])
        .await
        .expect("ci connects");
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = mtls::get(mirror.addr(), ci.clone(), manifest, &accept)
        .await
        .expect("ci pulls");
    reply.assert_manifest(&alpine.manifest);
    let reply = mtls::get(mirror.addr(), ci, "/v2/someuser/tool/manifests/latest", &accept)
        .await
        .expect("ci asks");
    assert_denied(&reply, &["ci", "docker.io/someuser/tool"]);

    let (cert, key) = client_certificate(&mirror.certs(), "intern");
    let intern = mtls::client_config(&ca, Some((&cert, &key)));
    let reply = mtls::get(mirror.addr(), intern, manifest, &accept)
        .await
        .expect("intern connects");
    assert_denied(&reply, &["intern"]);

    // The same name from another CA is nobody.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let other_ca = CertDir::new(elsewhere.path());
    certs::ensure(&other_ca, &Names::local(&[], &[]), NamePolicy::Exact).expect("another CA");
    let (cert, key) = client_certificate(&other_ca, "ci");
    let forged = mtls::client_config(&ca, Some((&cert, &key)));
    let refused = mtls::handshake(mirror.addr(), forged.clone()).await;
    let error = refused.err().unwrap_or_default();
    assert!(error.contains("fatal alert"), "refused in the handshake: {error}");
    let refused = mtls::get(mirror.addr(), forged, manifest, &accept).await;
    assert!(refused.is_err(), "no HTTP either: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates_sit_beside_htpasswd_users() {
    let (hub, alpine, tool) = hub().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = htpasswd(dir.path(), &[("alice", "wonderland")]);
    let mirror = Mirror::builder(&hub)
        .own_ca()
        .access(&format!(
            r#"
            htpasswd = {file:?}
            client_certificates = "optional"
            [[rules]]
            users = ["ci"]
            repos = ["docker.io/library/*"]
            [[rules]]
            users = ["alice"]
            repos = ["docker.io/someuser/*"]
            "#
        ))
        .start()
        .await;
    let ca = mirror.certs().ca_cert();
    let accept = ("accept", CONTAINERD_ACCEPT);
    let anonymous = mtls::client_config(&ca, None);

    let reply = mtls::get(mirror.addr(), anonymous.clone(), "/v2/", &[])
        .await
        .expect("connects");
    assert_challenged(&reply);
    let alice = basic("alice", "wonderland");
    let reply = mtls::get(
        mirror.addr(),
        anonymous,
        "/v2/someuser/tool/manifests/latest",
        &[("authorization", &alice), accept],
    )
    .await
    .expect("alice pulls");
    reply.assert_manifest(&tool.manifest);

    let (cert, key) = client_certificate(&mirror.certs(), "ci");
    let ci = mtls::client_config(&ca, Some((&cert, &key)));
    let reply = mtls::get(mirror.addr(), ci, "/v2/library/alpine/manifests/latest", &[accept])
        .await
        .expect("ci pulls");
    reply.assert_manifest(&alpine.manifest);
}
