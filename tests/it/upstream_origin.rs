//! The upstream's credentials and tokens stay with the upstream: a host a redirect led to
//! cannot ask for them with a challenge of its own.

use regmirror::config::Credentials;

use crate::support::fake_registry::{Fault, Kind, Role, Target};
use crate::support::{FakeRegistry, Format, Mirror};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_from_a_redirect_target_gets_no_token_and_no_credentials() {
    let credentials = Credentials {
        username: "hubuser".to_owned(),
        password: "dckr_pat_s3cret".to_owned(),
    };
    let fake = FakeRegistry::builder()
        .bearer_auth(Some(credentials))
        .cdn_redirects(true)
        .build()
        .await;
    let image = fake.push_image("acme/app", "v1", Format::Oci);
    let mirror = Mirror::builder(&fake)
        .credentials("hubuser", "dckr_pat_s3cret")
        .start()
        .await;
    // A first blob gets the upstream's token, which the mirror then sends up front.
    let first = &image.layers[0];
    mirror
        .get(&format!("/v2/acme/app/blobs/{}", first.digest))
        .await
        .assert_blob(first);
    assert_eq!(fake.token_requests().len(), 1);
    let layer = &image.layers[1];
    fake.fail_always(Target::reference(&layer.digest), Fault::CdnStatus(401));

    let reply = mirror.get(&format!("/v2/acme/app/blobs/{}", layer.digest)).await;
    assert!(
        reply.status.is_client_error() || reply.status.is_server_error(),
        "{reply:?}"
    );
    assert_eq!(
        fake.token_requests().len(),
        1,
        "the CDN's challenge gets no token fetched for it"
    );
    let of_layer = |role: Role| fake.count(|r| r.role == role && r.reference.as_deref() == Some(layer.digest.as_str()));
    assert_eq!(of_layer(Role::Cdn), 1, "nor a second try");
    assert_eq!(of_layer(Role::Registry), 1);
    assert_eq!(fake.count(|r| r.role == Role::Cdn && r.authorization.is_some()), 0);
    assert_eq!(fake.count(|r| r.kind == Kind::Token && r.role != Role::Registry), 0);

    fake.clear_faults();
    mirror
        .get(&format!("/v2/acme/app/blobs/{}", layer.digest))
        .await
        .assert_blob(layer);
}
