//! The status page at `/` (issue 6), as a person at the gateway sees it: the real binary with
//! its own CA, two images pulled through it over TLS (one twice), then the page rendered in
//! headless Chromium. The rendered DOM shows the hit ratio, the bytes by source, cache use
//! against its cap, the top images in order, a healthy upstream and the CA's fingerprint; a
//! screenshot is taken too, and written to `docs/status-page.png` when
//! `REGMIRROR_UPDATE_SCREENSHOT=1`.
//!
//! Without `chromium` on `PATH` the Chromium test is skipped with a message, unless
//! `REGMIRROR_REQUIRE_CHROMIUM=1` (set by `.ci/run`, which installs it) makes that a failure.
//!
//! The page names the mirror as the client addressed it, for the setup snippets; that is
//! checked over HTTP/1.1 (`Host`) and HTTP/2 (`:authority`, which browsers use).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::support::chromium::Chromium;
use crate::support::client::{Reply, CONTAINERD_ACCEPT};
use crate::support::content::Image;
use crate::support::credentials::{basic, htpasswd};
use crate::support::process::MirrorProcess;
use crate::support::push::{assert_blob_created, assert_manifest_created, send_body, with_query, Upload};
use crate::support::tls::{self, TlsClient};
use crate::support::{FakeRegistry, Format};

/// The mirror's own CA and server certificate, as it wrote them on first start.
struct OwnCerts {
    ca_pem: Vec<u8>,
    server_pem: Vec<u8>,
}

impl OwnCerts {
    fn read(data_dir: &Path) -> OwnCerts {
        let read = |name: &str| std::fs::read(data_dir.join("certs").join(name)).expect("the mirror's certificates");
        OwnCerts {
            ca_pem: read("ca.crt"),
            server_pem: read("server.crt"),
        }
    }

    /// SHA-256 of the CA certificate, colon-separated upper-case hex as browsers show it.
    fn ca_fingerprint(&self) -> String {
        let der = rustls_pemfile::certs(&mut &self.ca_pem[..])
            .next()
            .expect("a certificate in ca.crt")
            .expect("ca.crt parses");
        let digest = Sha256::digest(&der);
        digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }
}

async fn connect(mirror: &MirrorProcess, certs: &OwnCerts, alpn: &[&[u8]], authority: &str) -> TlsClient {
    let config = tls::client_config_from_pem(&certs.ca_pem, alpn);
    TlsClient::connect(mirror.addr(), config, authority)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", mirror.log()))
}

/// What a client pulls: the manifest by tag, then the config and every layer. Returns the
/// bytes received.
async fn pull(client: &mut TlsClient, repo: &str, tag: &str, image: &Image) -> u64 {
    let manifest = client
        .get(&format!("/v2/{repo}/manifests/{tag}"), &[("accept", CONTAINERD_ACCEPT)])
        .await;
    manifest.assert_manifest(&image.manifest);
    let mut bytes = manifest.bytes().len() as u64;
    for blob in image.blobs() {
        let reply = client.get(&format!("/v2/{repo}/blobs/{}", blob.digest), &[]).await;
        reply.assert_blob(blob);
        bytes += blob.bytes.len() as u64;
    }
    bytes
}

/// `bytes()` on the page for sizes between 1 KiB and 1 MiB.
fn kib(bytes: u64) -> String {
    assert!((1024..1024 * 1024).contains(&bytes), "{bytes}");
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium() {
    let Some(chromium) = Chromium::find() else {
        assert!(
            std::env::var_os("REGMIRROR_REQUIRE_CHROMIUM").is_none(),
            "chromium is not installed but REGMIRROR_REQUIRE_CHROMIUM is set"
        );
        eprintln!("skipping status_page_renders_in_chromium: `chromium` is not on PATH (apt-get install chromium)");
        return;
    };
    let fake = FakeRegistry::start().await;
    let alpine = fake.push_image("library/alpine", "3.20", Format::Oci);
    let nginx = fake.push_image("library/nginx", "1.27", Format::Docker);
    let dir = tempfile::tempdir().expect("data dir");
    let mirror = MirrorProcess::builder(&fake, dir.path())
        .own_ca()
        .args(["--max-cache-size", "1MiB"])
        .spawn()
        .await;
    let certs = OwnCerts::read(dir.path());
    let authority = format!("localhost:{}", mirror.addr().port());

    let mut client = connect(&mirror, &certs, &[b"http/1.1"], &authority).await;
    let alpine_bytes = pull(&mut client, "library/alpine", "3.20", &alpine).await;
    let nginx_bytes = pull(&mut client, "library/nginx", "1.27", &nginx).await;
    assert_eq!(pull(&mut client, "library/alpine", "3.20", &alpine).await, alpine_bytes);
    // Four lookups a pull (manifest, config, two layers): the second alpine pull hit.
    let (hits, misses) = (4, 8);

    let chromium = chromium.trusting(&certs.server_pem);
    let url = format!("https://{authority}/");
    let dom = chromium.dump_dom(&url).await;
    let expect = |text: &str| assert!(dom.contains(text), "no `{text}` in the rendered page:\n{dom}");
    expect("<h2>Hit ratio</h2><div class=\"v\">33.3%</div>");
    expect(&format!("{hits} hits, {misses} misses, 0 stale"));
    expect(&format!(
        "<h2>Served from cache</h2><div class=\"v\">{}</div>",
        kib(alpine_bytes)
    ));
    expect(&format!(
        "<h2>Fetched from upstream</h2><div class=\"v\">{}</div>",
        kib(alpine_bytes + nginx_bytes)
    ));
    // Cached: two manifests, two configs, four layers, each weighed in whole KiB.
    expect("<h2>Cache use</h2><div class=\"v\">");
    expect("<div class=\"s\">8 cached items of at most 1.0 MiB<div class=\"bar\">");
    expect("<span class=\"ok\">healthy</span>");
    // Names may carry their registry (`docker.io/…`).
    expect("library/alpine:3.20</code></td><td class=\"n\">2</td>");
    expect("library/nginx:1.27</code></td><td class=\"n\">1</td>");
    assert!(
        dom.find("library/alpine:3.20") < dom.find("library/nginx:1.27"),
        "most pulled first:\n{dom}"
    );
    expect(&certs.ca_fingerprint());
    expect("href=\"/ca.crt\"");

    let (path, keep) = match std::env::var_os("REGMIRROR_UPDATE_SCREENSHOT") {
        Some(_) => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png"),
            None,
        ),
        None => {
            let out = tempfile::tempdir().expect("screenshot dir");
            (out.path().join("status-page.png"), Some(out))
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("screenshot directory");
    }
    chromium.screenshot(&url, &path, (1280, 1000)).await;
    let png = std::fs::read(&path).expect("read the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {}", path.display());
    assert!(png.len() > 10_000, "a blank page? {} bytes", png.len());
    drop(keep);
}

/// The snippets name the mirror as the client reached it. Over HTTP/1.1 that is the `Host`
/// header; over HTTP/2, which every browser negotiates, there is no `Host`, only the
/// request's `:authority`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_names_the_mirror_as_the_client_addressed_it() {
    let fake = FakeRegistry::start().await;
    let dir = tempfile::tempdir().expect("data dir");
    let mirror = MirrorProcess::builder(&fake, dir.path()).own_ca().spawn().await;
    let certs = OwnCerts::read(dir.path());
    let authority = format!("mirror.lan:{}", mirror.addr().port());

    let mut http1 = connect(&mirror, &certs, &[b"http/1.1"], &authority).await;
    assert!(!http1.is_http2());
    assert_names(&http1.get("/", &[]).await, &authority, "HTTP/1.1");

    let mut http2 = connect(&mirror, &certs, &[b"h2", b"http/1.1"], &authority).await;
    assert!(http2.is_http2(), "the mirror offers h2");
    assert_names(&http2.get("/", &[]).await, &authority, "HTTP/2");
}

/// The header and the snippets name `authority`, port included: a client told
/// `https://host` alone would go to port 443.
fn assert_names(reply: &Reply, authority: &str, protocol: &str) {
    assert_eq!(reply.status.as_u16(), 200, "{reply:?}");
    let page = String::from_utf8_lossy(reply.bytes());
    for expected in [format!("at {authority}</p>"), format!("https://{authority}/ca.crt")] {
        assert!(
            page.contains(&expected),
            "{protocol}: no `{expected}` in the page:\n{page}"
        );
    }
}

/// Every answer, content and errors alike, tells a browser not to guess its type; the page
/// itself allows nothing to load, run or frame it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_say_nosniff_and_the_page_allows_nothing_to_load() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    let mirror = crate::support::Mirror::start(&fake).await;
    let paths = [
        "/".to_owned(),
        "/v2/".to_owned(),
        "/v2/alpine/manifests/latest".to_owned(),
        format!("/v2/alpine/blobs/{}", image.layers[0].digest),
        "/v2/alpine/manifests/absent".to_owned(),
        "/nowhere".to_owned(),
    ];
    for path in &paths {
        let reply = mirror.get_manifest(path).await;
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}: {reply:?}"
        );
    }
    let page = mirror.get("/").await;
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
}

/// A push in plain requests, as `authorization`: each blob by POST then PUT with its bytes,
/// then the manifest by PUT under `tag`.
async fn push_as(mirror: &crate::support::Mirror, authorization: &str, name: &str, tag: &str, image: &Image) {
    let auth = [("authorization", authorization)];
    for blob in image.blobs() {
        let path = format!("/v2/{name}/blobs/uploads/");
        let upload = Upload::from_reply(&send_body(mirror, Method::POST, &path, &auth, Bytes::new()).await, name);
        let url = with_query(&upload.url, "digest", &blob.digest);
        let reply = send_body(mirror, Method::PUT, &url, &auth, blob.bytes.clone()).await;
        assert_blob_created(&reply, name, &blob.digest);
    }
    let headers = [auth[0], ("content-type", image.manifest.media_type)];
    let path = format!("/v2/{name}/manifests/{tag}");
    let reply = send_body(mirror, Method::PUT, &path, &headers, image.manifest.bytes.clone()).await;
    assert_manifest_created(&reply, name, &image.manifest);
}

/// The page lists the hosted namespace and, of its repositories, those the viewer may pull,
/// each with its tags; a user without pull rights on a repository does not see it named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_lists_hosted_repositories_the_viewer_may_pull() {
    let fake = FakeRegistry::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = htpasswd(dir.path(), &[("alice", "wonderland"), ("bob", "builder")]);
    let mirror = crate::support::Mirror::builder(&fake)
        .hosted("site.lan")
        .access(&format!(
            r#"
            htpasswd = {file:?}
            [[rules]]
            users = ["alice"]
            repos = ["site.lan/gallery/*"]
            actions = ["pull", "push"]
            [[rules]]
            users = ["bob"]
            repos = ["site.lan/bob/*"]
            actions = ["pull", "push"]
            "#
        ))
        .start()
        .await;
    let (alice, bob) = (basic("alice", "wonderland"), basic("bob", "builder"));
    let image = Image::build(Format::Oci, "amd64");
    push_as(&mirror, &alice, "site.lan/gallery/ui", "v1", &image).await;
    push_as(&mirror, &alice, "site.lan/gallery/ui", "v2", &image).await;
    push_as(&mirror, &bob, "site.lan/bob/tool", "1.0", &image).await;

    let page_for = |authorization: String| {
        let mirror = &mirror;
        async move {
            let reply = mirror
                .send(Method::GET, "/", &[("authorization", &authorization)])
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            String::from_utf8_lossy(reply.bytes()).into_owned()
        }
    };
    let page = page_for(alice).await;
    assert!(page.contains("<h2>Hosted repositories</h2>"), "{page}");
    assert!(page.contains("/site.lan/…</code>"), "{page}");
    assert!(
        page.contains("<tr><td><code>site.lan/gallery/ui</code></td><td>v1, v2</td></tr>"),
        "{page}"
    );
    assert!(
        !page.contains("bob/tool"),
        "alice may not pull bob's repository:\n{page}"
    );

    let page = page_for(bob).await;
    assert!(
        page.contains("<tr><td><code>site.lan/bob/tool</code></td><td>1.0</td></tr>"),
        "{page}"
    );
    assert!(!page.contains("gallery"), "bob may not pull the gallery:\n{page}");
}
