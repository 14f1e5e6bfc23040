//! `tags/list` is proxied: `n` and `last` go upstream, the upstream's `Link` comes back,
//! and a copy is kept for when the upstream is down.

use serde_json::json;

use crate::support::fake_registry::Kind;
use crate::support::{FakeRegistry, Format, Mirror, Reply};

/// The path of a `Link: <…>; rel="next"` header, absolute or not.
fn next_page(reply: &Reply) -> Option<String> {
    let link = reply.header("link")?;
    assert!(link.contains("rel=\"next\""), "{link}");
    let target = link
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(t, _)| t)
        .expect("<target>");
    let path = match target.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/').expect("path in absolute Link")..],
        None => target,
    };
    Some(path.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_n_last_and_link() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "3.18", Format::Docker);
    for tag in ["3.19", "3.20", "3.21", "edge", "latest"] {
        fake.set_tag("library/alpine", tag, &image.manifest.digest);
    }
    let mirror = Mirror::start(&fake).await;

    let mut pages = Vec::new();
    let mut path = Some("/v2/library/alpine/tags/list?n=2".to_owned());
    while let Some(current) = path {
        assert!(pages.len() < 5, "Link loops: {pages:?}");
        let reply = mirror.get(&current).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json()["name"], "library/alpine");
        pages.push(reply.json()["tags"].clone());
        path = next_page(&reply);
    }
    assert_eq!(
        pages,
        [
            json!(["3.18", "3.19"]),
            json!(["3.20", "3.21"]),
            json!(["edge", "latest"])
        ]
    );
    let upstream_queries: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.kind == Kind::TagsList)
        .filter_map(|r| r.query)
        .collect();
    assert!(
        upstream_queries
            .iter()
            .any(|q| q.contains("last=3.19") && q.contains("n=2")),
        "{upstream_queries:?}"
    );

    let empty = mirror.get("/v2/library/alpine/tags/list?n=0").await;
    assert_eq!(empty.json()["tags"], json!([]), "{empty:?}");
    assert_eq!(empty.header("link"), None);
    let all = mirror.get("/v2/alpine/tags/list").await;
    assert_eq!(
        all.json()["tags"],
        json!(["3.18", "3.19", "3.20", "3.21", "edge", "latest"]),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_list_is_served_when_upstream_is_down() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "3.20", Format::Docker);
    fake.set_tag("library/alpine", "latest", &image.manifest.digest);
    let mirror = Mirror::start(&fake).await;

    let live = mirror.get("/v2/library/alpine/tags/list").await;
    assert_eq!(live.json()["tags"], json!(["3.20", "latest"]), "{live:?}");
    fake.stop().await;
    let cached = mirror.get("/v2/library/alpine/tags/list").await;
    assert_eq!(cached.status, 200, "{cached:?}");
    assert_eq!(cached.json()["tags"], json!(["3.20", "latest"]));
}
