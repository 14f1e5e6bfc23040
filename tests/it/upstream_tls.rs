//! An upstream reached over HTTPS with a CA of its own, as a private registry is: the
//! registry, its token realm and its CDN all speak TLS (HTTP/2 when offered, as Docker Hub
//! does), and the mirror trusts them only through the registry's `ca` setting in the config
//! file. A CA that does not match is a prompt upstream error that names the certificate.

use std::path::Path;
use std::time::{Duration, Instant};

use http::{Method, Version};
use regmirror::config::ServeOptions;
use regmirror::Config;
use tempfile::TempDir;

use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::fake_registry::Role;
use crate::support::tls::{client_config_from_pem, TestCa, TlsClient};
use crate::support::{FakeRegistry, Format, Mirror, Reply};

/// The private registry's name; clients pick it by path prefix.
const PRIVATE: &str = "registry.internal";

/// How long a refused certificate may take to become an answer: a handshake on loopback,
/// with room for a loaded machine, and far below any of the mirror's upstream timeouts.
const PROMPT: Duration = Duration::from_secs(3);

/// A mirror read from a config file, as the binary reads it. `[[registries]]` makes
/// `upstream` the registry `PRIVATE` with `ca` naming a file holding `ca_pem`; Docker Hub's
/// upstream is the same server, but with no `ca`, so only the public roots vouch for it.
/// The returned directory holds the files and must outlive the mirror.
async fn mirror_trusting(upstream: &FakeRegistry, ca_pem: &str) -> (Mirror, TempDir) {
    let files = tempfile::tempdir().expect("tempdir");
    let ca = files.path().join("upstream-ca.pem");
    std::fs::write(&ca, ca_pem).expect("write the CA file");
    let data_dir = TempDir::new().expect("data dir");
    let toml = format!(
        r#"
        data_dir = {data:?}
        insecure_http = true
        upstream = "{url}"

        [[registries]]
        name = "{PRIVATE}"
        url = "{url}"
        ca = {ca:?}
        "#,
        data = data_dir.path(),
        url = upstream.url(),
    );
    let config = config_from(files.path(), &toml);
    (Mirror::from_config(config, data_dir).start().await, files)
}

fn config_from(dir: &Path, toml: &str) -> Config {
    let path = dir.join("regmirror.toml");
    std::fs::write(&path, toml).expect("write config");
    let options = ServeOptions {
        config: Some(path),
        ..Default::default()
    };
    Config::from_options(options, None, None).expect("the config file is valid")
}

/// A Hub-like upstream over TLS: bearer tokens, blobs behind CDN redirects.
async fn https_upstream(ca: &TestCa) -> FakeRegistry {
    FakeRegistry::builder()
        .tls(ca)
        .bearer_auth(None)
        .cdn_redirects(true)
        .build()
        .await
}

fn private(path: &str) -> String {
    format!("/v2/{PRIVATE}/{path}")
}

/// Asserts a 503 `UNAVAILABLE` whose message says that TLS failed on the upstream's
/// certificate, and what it was checked against (`trust`: the CA file, or the public roots).
fn assert_certificate_refused(reply: &Reply, trust: &str) {
    reply.assert_error(503, "UNAVAILABLE");
    let json = reply.json();
    let message = json["errors"][0]["message"].as_str().expect("a message");
    let lower = message.to_ascii_lowercase();
    assert!(lower.contains("tls") && lower.contains("certificate"), "{message}");
    assert!(message.contains(trust), "names {trust}: {message}");
}

/// The fake itself, so that a failure below points at the mirror: a client trusting the CA
/// gets HTTP/2 by ALPN, and the challenge sends it to an `https` token realm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_speaks_tls_with_an_https_realm() {
    let ca = TestCa::new();
    let fake = https_upstream(&ca).await;
    let authority = fake.url().trim_start_matches("https://").to_owned();
    let addr = authority.parse().expect("the fake listens on an IP address");
    let config = client_config_from_pem(ca.pem().as_bytes(), &[b"h2", b"http/1.1"]);
    let mut client = TlsClient::connect(addr, config, &authority)
        .await
        .expect("the CA vouches for the fake");
    assert!(client.is_http2());
    let reply = client.get("/v2/", &[]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let realm = format!("Bearer realm=\"{}/token\"", fake.url());
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with(&realm), "{challenge}");
}

/// A pull through the whole Hub-style flow over TLS (challenge, token from the `https` realm,
/// 307 to the `https` CDN), trusting the private CA through `ca` alone: exact bytes, one
/// upstream fetch of each manifest and blob, one token, and a second round all cache hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_upstream_serves_exact_bytes_through_its_token_realm_and_cdn() {
    let ca = TestCa::new();
    let fake = https_upstream(&ca).await;
    assert!(fake.url().starts_with("https://") && fake.cdn_url().starts_with("https://"));
    let image = fake.push_image("team/app", "1", Format::Oci);
    // Several HTTP/2 flow-control windows, so the transfer is more than a single write.
    let big = Blob::new(random_bytes(3 * MIB));
    fake.add_blob("team/app", big.bytes.clone());
    let blobs: Vec<&Blob> = image.blobs().chain([&big]).collect();
    let (mirror, _files) = mirror_trusting(&fake, ca.pem()).await;

    let mut totals = Vec::new();
    for _ in 0..2 {
        mirror
            .get_manifest(&private("team/app/manifests/1"))
            .await
            .assert_manifest(&image.manifest);
        mirror
            .head_manifest(&private("team/app/manifests/1"))
            .await
            .assert_manifest_head(&image.manifest);
        let by_digest = private(&format!("team/app/manifests/{}", image.manifest.digest));
        mirror.get_manifest(&by_digest).await.assert_manifest(&image.manifest);
        for blob in &blobs {
            let path = private(&format!("team/app/blobs/{}", blob.digest));
            mirror.get(&path).await.assert_blob(blob);
        }
        totals.push(fake.total());
    }

    assert_eq!(totals[0], totals[1], "the second round is all cache hits");
    assert_eq!(fake.manifest_gets("team/app"), 1, "{:#?}", fake.requests());
    for blob in &blobs {
        assert_eq!(fake.blob_gets(&blob.digest), 1, "{}", blob.digest);
        assert_eq!(fake.cdn_gets(&blob.digest), 1, "{}", blob.digest);
    }
    let tokens = fake.token_requests();
    assert_eq!(tokens.len(), 1, "one token for the repository, reused: {tokens:#?}");
    assert_eq!(tokens[0].query_values("scope"), ["repository:team/app:pull"]);
    assert_eq!(fake.count(|r| r.role == Role::Cdn && r.authorization.is_some()), 0);
    let requests = fake.requests();
    assert!(
        requests.iter().all(|r| r.version == Version::HTTP_2),
        "the mirror speaks HTTP/2 to an upstream that offers it, as Docker Hub does: {requests:#?}"
    );
}

/// The public roots do not vouch for a private CA: the same server, reached as Docker Hub
/// (no `ca`), is refused at the handshake, while `PRIVATE` (with `ca`) is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_ca_setting_makes_a_private_ca_trusted() {
    let ca = TestCa::new();
    let fake = https_upstream(&ca).await;
    let image = fake.push_image("team/app", "1", Format::Docker);
    let (mirror, _files) = mirror_trusting(&fake, ca.pem()).await;

    let public = "the public web roots";
    assert_certificate_refused(&mirror.get_manifest("/v2/team/app/manifests/1").await, public);
    let blob = format!("/v2/team/app/blobs/{}", image.config.digest);
    assert_certificate_refused(&mirror.get(&blob).await, public);
    assert_eq!(fake.total(), 0, "nothing passed the handshake: {:#?}", fake.requests());

    mirror
        .get_manifest(&private("team/app/manifests/1"))
        .await
        .assert_manifest(&image.manifest);
    assert_eq!(fake.manifest_gets("team/app"), 1, "{:#?}", fake.requests());
}

/// A `ca` from another authority: every request fails fast with a 503 whose message says
/// the certificate was refused, and no request gets past the handshake; with the right CA
/// in its place, the same pull works, so the CA was all that was wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_a_prompt_upstream_error_naming_the_certificate() {
    let ca = TestCa::new();
    let fake = https_upstream(&ca).await;
    let image = fake.push_image("team/app", "1", Format::Docker);
    let (mirror, files) = mirror_trusting(&fake, TestCa::new().pem()).await;
    let ca_file = files.path().join("upstream-ca.pem").display().to_string();

    let manifest = private("team/app/manifests/1");
    let blob = private(&format!("team/app/blobs/{}", image.config.digest));
    for (method, path) in [(Method::GET, &manifest), (Method::GET, &blob), (Method::HEAD, &blob)] {
        let started = Instant::now();
        let reply = match method {
            Method::HEAD => mirror.head(path).await,
            _ => mirror.get_manifest(path).await,
        };
        let took = started.elapsed();
        assert!(took < PROMPT, "{method} {path} took {took:?}");
        if method == Method::HEAD {
            assert_eq!(reply.status, 503, "{reply:?}");
        } else {
            assert_certificate_refused(&reply, &ca_file);
        }
    }
    assert_eq!(fake.total(), 0, "nothing passed the handshake: {:#?}", fake.requests());

    drop((mirror, files));
    let (mirror, _files) = mirror_trusting(&fake, ca.pem()).await;
    mirror.get_manifest(&manifest).await.assert_manifest(&image.manifest);
    mirror.get(&blob).await.assert_blob(&image.config);
}
