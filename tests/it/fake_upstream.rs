//! Checks on the fake upstream itself, talked to directly without the mirror.
//!
//! Every other test trusts the fake to behave like Docker Hub; these make sure it does,
//! so that a failure elsewhere points at the mirror and not at the test support.

use http::{Method, StatusCode};

use crate::support::client::send;
use crate::support::content::sha256;
use crate::support::fake_registry::Kind;
use crate::support::streaming::Streaming;
use crate::support::{poll_until, FakeRegistry, Fault, Format, Gate, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_flow_and_hub_style_denials() {
    let fake = FakeRegistry::builder().bearer_auth(None).build().await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    let manifest_url = format!("{}/v2/library/alpine/manifests/latest", fake.url());
    let accept = [("accept", image.manifest.media_type)];

    let challenged = send(&manifest_url, Method::GET, &accept).await;
    assert_eq!(challenged.status, StatusCode::UNAUTHORIZED);
    let challenge = challenged.header("www-authenticate").expect("challenge");
    assert!(
        challenge.contains(&format!("realm=\"{}/token\"", fake.url())),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"repository:library/alpine:pull\""),
        "{challenge}"
    );

    let token_url = format!(
        "{}/token?service=fake.registry&scope=repository%3Alibrary%2Falpine%3Apull",
        fake.url()
    );
    let token = send(&token_url, Method::GET, &[]).await.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let bearer = format!("Bearer {token}");
    let with_token = [accept[0], ("authorization", bearer.as_str())];

    let head = send(&manifest_url, Method::HEAD, &with_token).await;
    assert_eq!(head.status, StatusCode::OK, "{head:?}");
    assert_eq!(
        head.header("content-length"),
        Some(image.manifest.bytes.len().to_string().as_str())
    );
    assert_eq!(
        head.header("docker-content-digest"),
        Some(image.manifest.digest.as_str())
    );
    send(&manifest_url, Method::GET, &with_token)
        .await
        .assert_bytes(&image.manifest.bytes);

    // A token for one repository is no good for another, and a repository that does not
    // exist is a 401 whatever the token: the two cases the mirror must tell apart.
    let other = send(
        &format!("{}/v2/library/busybox/manifests/latest", fake.url()),
        Method::GET,
        &with_token,
    )
    .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fake.token_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_redirects_to_a_cdn_that_refuses_authorization() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let digest = fake.add_blob("library/alpine", crate::support::content::random_bytes(40_000));
    let redirect = send(
        &format!("{}/v2/library/alpine/blobs/{digest}", fake.url()),
        Method::GET,
        &[],
    )
    .await;
    assert_eq!(redirect.status, StatusCode::TEMPORARY_REDIRECT);
    let location = redirect.header("location").expect("Location").to_owned();
    assert!(location.starts_with(&fake.cdn_url()), "{location}");

    let refused = send(&location, Method::GET, &[("authorization", "Bearer x")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let served = send(&location, Method::GET, &[]).await;
    assert_eq!(sha256(served.bytes()), digest);
    let ranged = send(&location, Method::GET, &[("range", "bytes=-10")]).await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.header("content-range"), Some("bytes 39990-39999/40000"));

    assert_eq!(fake.blob_gets(&digest), 1);
    assert_eq!(fake.cdn_gets(&digest), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_corrupt_truncate_and_answer_statuses() {
    let fake = FakeRegistry::start().await;
    let bytes = crate::support::content::random_bytes(100_000);
    let digest = fake.add_blob("x/y", bytes.clone());
    let url = format!("{}/v2/x/y/blobs/{digest}", fake.url());

    fake.fail_next(Target::reference(&digest), 1, Fault::CorruptByte);
    let corrupt = send(&url, Method::GET, &[]).await;
    assert_eq!(corrupt.bytes().len(), bytes.len());
    assert_ne!(sha256(corrupt.bytes()), digest);

    fake.fail_next(Target::name("x/y"), 1, Fault::Truncate);
    let truncated = send(&url, Method::GET, &[]).await;
    assert!(truncated.body.is_err(), "{truncated:?}");

    fake.fail_next(Target::Any, 1, Fault::too_many_requests(7));
    let limited = send(&url, Method::GET, &[]).await;
    limited.assert_error(429, "TOOMANYREQUESTS");
    assert_eq!(limited.header("retry-after"), Some("7"));

    fake.fail_next(
        Target::name("x/y"),
        1,
        Fault::Throttle(std::time::Duration::from_millis(1)),
    );
    send(&url, Method::GET, &[]).await.assert_bytes(&bytes);
    assert_eq!(fake.count(|r| r.kind == Kind::Blob), 4);
    // The corrupt body and the throttled one went out in full; the truncated one did not.
    assert_eq!(fake.bodies_completed(&digest), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_faults_pauses_and_an_upstream_without_ranges() {
    let fake = FakeRegistry::start().await;
    let bytes = crate::support::content::random_bytes(100_000);
    let digest = fake.add_blob("x/y", bytes.clone());
    let url = format!("{}/v2/x/y/blobs/{digest}", fake.url());

    fake.fail_next(Target::reference(&digest), 1, Fault::MisalignedRange);
    let shifted = send(&url, Method::GET, &[("range", "bytes=50000-")]).await;
    assert_eq!(shifted.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(shifted.header("content-range"), Some("bytes 33616-99999/100000"));
    assert!(shifted.bytes()[..] == bytes[33_616..]);

    let pause = std::time::Duration::from_millis(300);
    fake.fail_next(Target::reference(&digest), 1, Fault::PauseMidBody(pause));
    let started = std::time::Instant::now();
    send(&url, Method::GET, &[]).await.assert_bytes(&bytes);
    assert!(started.elapsed() >= pause);

    let whole_only = FakeRegistry::builder().range_requests(false).build().await;
    let digest = whole_only.add_blob("x/y", bytes.clone());
    let url = format!("{}/v2/x/y/blobs/{digest}", whole_only.url());
    let reply = send(&url, Method::GET, &[("range", "bytes=50000-")]).await;
    reply.assert_bytes(&bytes);
    assert_eq!(reply.header("accept-ranges"), None);
    assert_eq!(reply.header("content-range"), None);
}

/// A held answer waits at its gate, and a body held mid-way sends its first half and no
/// more, until the test opens the gate; both then complete with the exact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_hold_an_answer_and_a_body_until_opened() {
    let fake = FakeRegistry::start().await;
    let bytes = crate::support::content::random_bytes(200_000);
    let digest = fake.add_blob("x/y", bytes.clone());
    let url = format!("{}/v2/x/y/blobs/{digest}", fake.url());
    let within = std::time::Duration::from_secs(10);

    let gate = Gate::new();
    fake.fail_next(Target::reference(&digest), 1, Fault::Hold(gate.clone()));
    let held = tokio::spawn(send_owned(url.clone()));
    assert!(
        poll_until(within, || gate.held() == 1).await,
        "the answer reached the gate"
    );
    assert!(!held.is_finished(), "a held answer came before the gate opened");
    gate.open();
    held.await.unwrap().assert_bytes(&bytes);
    assert_eq!(gate.held(), 0);

    let gate = Gate::new();
    fake.fail_next(Target::reference(&digest), 1, Fault::HoldMidBody(gate.clone()));
    let mut body = Streaming::open(&url, Method::GET, &[]).await;
    assert_eq!(body.status, StatusCode::OK);
    body.read_at_least(bytes.len() / 3).await;
    assert!(
        poll_until(within, || gate.held() == 1).await,
        "the body reached the gate"
    );
    assert_eq!(
        fake.bodies_completed(&digest),
        1,
        "only the first, unheld body is complete"
    );
    gate.open();
    assert!(body.finish().await.unwrap()[..] == bytes[..]);
    assert_eq!(fake.bodies_completed(&digest), 2);
}

async fn send_owned(url: String) -> crate::support::Reply {
    send(&url, Method::GET, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_list_paginates_with_link() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("x/y", "a", Format::Oci);
    for tag in ["b", "c"] {
        fake.set_tag("x/y", tag, &image.manifest.digest);
    }
    let page = send(&format!("{}/v2/x/y/tags/list?n=2", fake.url()), Method::GET, &[]).await;
    assert_eq!(page.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        page.header("link"),
        Some("</v2/x/y/tags/list?last=b&n=2>; rel=\"next\"")
    );
    let last = send(&format!("{}/v2/x/y/tags/list?last=b&n=2", fake.url()), Method::GET, &[]).await;
    assert_eq!(last.json()["tags"], serde_json::json!(["c"]));
    assert_eq!(last.header("link"), None);

    fake.stop().await;
    assert!(crate::support::client::try_send(&fake.url(), Method::GET, &[])
        .await
        .is_err());
}
