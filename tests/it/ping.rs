//! The version check, `GET /v2/`: answered by the mirror itself, whatever the upstream
//! is doing, because dockerd and containers/image give up on a mirror that fails it.

use std::time::Duration;

use http::StatusCode;

use crate::support::{FakeRegistry, Fault, Mirror, Target};

async fn assert_ping(mirror: &Mirror) {
    for path in ["/v2/", "/v2"] {
        let reply = mirror.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
        assert_eq!(reply.json(), serde_json::json!({}), "{path}");
        assert_eq!(
            reply.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_with_the_upstream_stopped() {
    let fake = FakeRegistry::start().await;
    let mirror = Mirror::start(&fake).await;
    fake.stop().await;
    assert_ping(&mirror).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_does_not_wait_for_a_stalled_upstream() {
    let fake = FakeRegistry::start().await;
    // Far longer than the client's patience: a relayed ping would time out the test.
    fake.fail_always(Target::Any, Fault::Stall(Duration::from_secs(60)));
    let mirror = Mirror::start(&fake).await;
    assert_ping(&mirror).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_does_not_relay_the_upstream_challenge() {
    let fake = FakeRegistry::builder().bearer_auth(None).build().await;
    let mirror = Mirror::start(&fake).await;
    assert_ping(&mirror).await;
    let head = mirror.head("/v2/").await;
    assert_eq!(head.status, StatusCode::OK, "{head:?}");
    assert_eq!(head.header("www-authenticate"), None);
}
