//! `--log-format json` (issue 6): every line the binary writes to stderr is one JSON object,
//! and every line logged while a request is answered carries that request's id (the
//! `request` span), including lines from deep inside the mirror; ids differ by request.

use std::collections::HashSet;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::support::client::{self, CONTAINERD_ACCEPT};
use crate::support::process::MirrorProcess;
use crate::support::{FakeRegistry, Format};

const TAG_PATH: &str = "/v2/library/alpine/manifests/3.20";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_request_id() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "3.20", Format::Oci);
    let dir = tempfile::tempdir().expect("data dir");
    // Tags are revalidated on every pull, so with the upstream gone the mirror logs a
    // warning from inside the request: served stale.
    let mut mirror = MirrorProcess::builder(&fake, dir.path())
        .json_logs()
        .args(["--tag-ttl", "0s"])
        .spawn()
        .await;
    let accept = [("accept", CONTAINERD_ACCEPT)];
    assert_eq!(mirror.get("/v2/").await.status, StatusCode::OK);
    client::send(&mirror.url(TAG_PATH), http::Method::GET, &accept)
        .await
        .assert_manifest(&image.manifest);
    fake.stop().await;
    let stale = client::send(&mirror.url(TAG_PATH), http::Method::GET, &accept).await;
    stale.assert_manifest(&image.manifest);
    assert!(stale.header("warning").is_some(), "{stale:?}");
    mirror.signal("TERM");
    let status = mirror.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{}", mirror.log());

    let log = mirror.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or_default().to_owned();
    let request_id = |line: &Value| -> String {
        assert_eq!(line["span"]["name"], "request", "{line}");
        let id = line["span"]["id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "no request id: {line}");
        id.to_owned()
    };

    let requests: Vec<&Value> = lines.iter().filter(|l| message(l) == "request").collect();
    assert_eq!(requests.len(), 3, "{log}");
    let ids: HashSet<String> = requests.iter().map(|l| request_id(l)).collect();
    assert_eq!(ids.len(), 3, "one id per request:\n{log}");
    let stale_request = requests
        .iter()
        .find(|l| l["fields"]["cache"] == "stale")
        .unwrap_or_else(|| panic!("no request line for the stale answer:\n{log}"));
    assert_eq!(stale_request["fields"]["path"], TAG_PATH, "{stale_request}");

    let warning = lines
        .iter()
        .find(|l| message(l).contains("serving the cached tag"))
        .unwrap_or_else(|| panic!("no stale warning:\n{log}"));
    assert_eq!(
        request_id(warning),
        request_id(stale_request),
        "the warning carries the id of the request it belongs to:\n{log}"
    );
}
