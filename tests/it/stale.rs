//! `max_stale` bounds stale-if-error (docs/protocol.md §9.5).
//!
//! `revalidation` shows a cached tag served with a `Warning` while the upstream fails and
//! no limit is set; here the limit is 4 s, so the same failure gives the stale copy while
//! the tag's last upstream confirmation is recent, and the upstream's error once it is
//! older. Serving stale must not count as a confirmation: a stale answer halfway through the
//! window does not stretch it.
//!
//! A tag's age is whole seconds of the wall clock, kept on disk, so tokio's paused time
//! cannot stand in for it: the window is seconds wider than the few requests made inside it
//! need on a loaded machine, and the test sleeps past it.

use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::support::content::Image;
use crate::support::{FakeRegistry, Fault, Format, Mirror, Reply, Target};

const PATH: &str = "/v2/library/node/manifests/lts";

/// Within it of a confirmation, the stale copy is served: at least this long, whatever the
/// whole-second rounding of the tag's age.
const MAX_STALE: Duration = Duration::from_secs(4);
/// Past `MAX_STALE` whatever the rounding: the age is then at least `MAX_STALE` + 1 s.
const PAST_MAX_STALE: Duration = Duration::from_millis(5100);
/// Halfway through the window: a stale answer then, were it taken for a confirmation, would
/// keep the tag within `MAX_STALE` at `PAST_MAX_STALE`.
const MID_WINDOW: Duration = Duration::from_secs(2);

fn assert_stale(reply: &Reply) {
    let warning = reply
        .header("warning")
        .unwrap_or_else(|| panic!("stale answer carries a Warning: {reply:?}"));
    assert!(warning.starts_with("299 "), "{warning}");
}

/// A mirror that revalidates on every request and may serve a tag stale for `MAX_STALE`,
/// with `lts` confirmed upstream just now: by the returned instant.
async fn confirmed_tag(fake: &FakeRegistry) -> (Mirror, Image, Instant) {
    let image = fake.push_image("library/node", "lts", Format::Docker);
    let mirror = Mirror::builder(fake)
        .tag_ttl(Duration::ZERO)
        .max_stale(MAX_STALE)
        .start()
        .await;
    mirror.get_manifest(PATH).await.assert_manifest(&image.manifest);
    (mirror, image, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_upstream_gets_stale_tag_only_within_max_stale() {
    let fake = FakeRegistry::start().await;
    let (mirror, image, confirmed) = confirmed_tag(&fake).await;
    fake.fail_always(Target::Any, Fault::too_many_requests(30));

    let reply = mirror.get_manifest(PATH).await;
    reply.assert_manifest(&image.manifest);
    assert_stale(&reply);
    let head = mirror.head_manifest(PATH).await;
    head.assert_manifest_head(&image.manifest);
    assert_stale(&head);
    sleep_until(confirmed + MID_WINDOW).await;
    let reply = mirror.get_manifest(PATH).await;
    reply.assert_manifest(&image.manifest);
    assert_stale(&reply);

    sleep_until(confirmed + PAST_MAX_STALE).await;
    let reply = mirror.get_manifest(PATH).await;
    reply.assert_error(429, "TOOMANYREQUESTS");
    assert!(reply.header("warning").is_none(), "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("30"), "{reply:?}");

    // The digest itself is immutable and still served; only the tag's answer expired.
    let by_digest = format!("/v2/library/node/manifests/{}", image.manifest.digest);
    mirror.get_manifest(&by_digest).await.assert_manifest(&image.manifest);

    // Once the upstream confirms the tag again, the window starts over.
    fake.clear_faults();
    mirror.get_manifest(PATH).await.assert_manifest(&image.manifest);
    fake.fail_always(Target::Any, Fault::too_many_requests(30));
    assert_stale(&mirror.get_manifest(PATH).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_gets_stale_tag_only_within_max_stale() {
    let fake = FakeRegistry::start().await;
    let (mirror, image, confirmed) = confirmed_tag(&fake).await;
    fake.stop().await;

    let reply = mirror.get_manifest(PATH).await;
    reply.assert_manifest(&image.manifest);
    assert_stale(&reply);

    sleep_until(confirmed + PAST_MAX_STALE).await;
    let reply = mirror.get_manifest(PATH).await;
    reply.assert_error(503, "UNAVAILABLE");
    assert!(reply.header("warning").is_none(), "{reply:?}");
}

/// A 5xx is an outage too: stale within the window, the upstream's failure after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstream_gets_stale_tag_only_within_max_stale() {
    let fake = FakeRegistry::start().await;
    let (mirror, image, confirmed) = confirmed_tag(&fake).await;
    fake.fail_always(Target::Any, Fault::status(503));

    let reply = mirror.get_manifest(PATH).await;
    reply.assert_manifest(&image.manifest);
    assert_stale(&reply);

    sleep_until(confirmed + PAST_MAX_STALE).await;
    let reply = mirror.get_manifest(PATH).await;
    assert!(matches!(reply.status.as_u16(), 502 | 503), "{reply:?}");
    reply.assert_error_body(&["UNAVAILABLE"]);
    assert!(reply.header("warning").is_none(), "{reply:?}");
}
