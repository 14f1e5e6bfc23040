//! Connections a client opens and then neglects: silent sockets, idle keep-alive connections
//! (HTTP/1.1 and HTTP/2), and more connections than one client or all of them may hold. Each
//! must be closed by the mirror, counted in /metrics, and never cut a request in flight.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::support::client::{send, try_send};
use crate::support::content::{random_bytes, Blob};
use crate::support::metrics::Scrape;
use crate::support::{FakeRegistry, Fault, Gate, Mirror, Reply, Target};

const FIRST_REQUEST: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_millis(500);
/// Timers and the client's view of the close may differ by this much.
const SLACK: Duration = Duration::from_millis(50);
/// Far more than any deadline here, so a connection the mirror should close fails the test
/// instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

async fn mirror_with_short_deadlines(fake: &FakeRegistry) -> Mirror {
    Mirror::builder(fake)
        .connections(|limits| {
            limits.first_request_timeout = FIRST_REQUEST;
            limits.idle_timeout = IDLE;
        })
        .start()
        .await
}

/// How long until the mirror closes `stream` (reads end or fail), having sent nothing.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
    let read = read.expect("the mirror kept a neglected connection open");
    assert!(matches!(read, Ok(0) | Err(_)), "the mirror answered: {read:?}");
    started.elapsed()
}

/// A TCP connection from a given loopback address, so tests can be several clients.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let from: SocketAddr = format!("{from}:0").parse().expect("address");
    socket.bind(from).expect("bind the client side");
    socket.connect(to).await.expect("connect")
}

#[tokio::test]
async fn a_silent_connection_and_one_sending_a_byte_are_closed_at_the_first_request_deadline() {
    let fake = FakeRegistry::start().await;
    let mirror = mirror_with_short_deadlines(&fake).await;
    let before = Scrape::of(&mirror).await;

    let mut silent = TcpStream::connect(mirror.addr()).await.expect("connect");
    let mut one_byte = TcpStream::connect(mirror.addr()).await.expect("connect");
    one_byte.write_all(b"G").await.expect("write");
    for stream in [&mut silent, &mut one_byte] {
        let after = closed_after(stream).await;
        assert!(
            after < FIRST_REQUEST + Duration::from_secs(2),
            "closed only after {after:?}"
        );
    }

    let scrape = Scrape::of(&mirror).await;
    let series = r#"regmirror_connections_timed_out_total{deadline="first_request"}"#;
    assert_eq!(scrape.delta_or_zero(&before, series), 2.0, "{scrape:?}");
}

#[tokio::test]
async fn a_tls_connection_that_never_completes_its_handshake_is_closed_at_the_same_deadline() {
    let fake = FakeRegistry::start().await;
    let mirror = Mirror::builder(&fake)
        .own_ca()
        .connections(|limits| limits.first_request_timeout = FIRST_REQUEST)
        .start()
        .await;
    let mut stream = TcpStream::connect(mirror.addr()).await.expect("connect");
    // The start of a TLS record, and then nothing.
    stream.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
    let after = closed_after(&mut stream).await;
    assert!(
        after < FIRST_REQUEST + Duration::from_secs(2),
        "closed only after {after:?}"
    );
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_after_the_idle_timeout_but_not_before() {
    let fake = FakeRegistry::start().await;
    let mirror = mirror_with_short_deadlines(&fake).await;
    let stream = TcpStream::connect(mirror.addr()).await.expect("connect");
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    let connection = tokio::spawn(connection);

    // Requests spaced under the idle timeout keep the connection, past the first-request deadline.
    for _ in 0..3 {
        tokio::time::sleep(IDLE / 2).await;
        let response = sender
            .send_request(ping(&mirror))
            .await
            .expect("a request on the open connection");
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.expect("body");
    }
    let idle_from = Instant::now();
    tokio::time::timeout(WAIT, connection)
        .await
        .expect("the idle connection stayed open")
        .expect("task")
        .expect("a clean close");
    assert!(
        idle_from.elapsed() >= IDLE - SLACK,
        "closed too early: {:?}",
        idle_from.elapsed()
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let fake = FakeRegistry::start().await;
    let mirror = mirror_with_short_deadlines(&fake).await;
    let stream = TcpStream::connect(mirror.addr()).await.expect("connect");
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("an HTTP/2 handshake with prior knowledge");
    let connection = tokio::spawn(connection);
    let response = sender.send_request(ping(&mirror)).await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.expect("body");

    let idle_from = Instant::now();
    tokio::time::timeout(WAIT, connection)
        .await
        .expect("the idle HTTP/2 connection stayed open")
        .expect("task")
        .expect("a clean close (GOAWAY)");
    assert!(
        idle_from.elapsed() >= IDLE - SLACK,
        "closed too early: {:?}",
        idle_from.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_in_flight_outlasts_the_idle_timeout() {
    let fake = FakeRegistry::start().await;
    let blob = Blob::new(random_bytes(256 * 1024));
    fake.add_blob("library/alpine", blob.bytes.clone());
    let gate = Gate::new();
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::HoldMidBody(gate.clone()));
    let mirror = mirror_with_short_deadlines(&fake).await;

    let path = format!("/v2/library/alpine/blobs/{}", blob.digest);
    let pull = tokio::spawn({
        let url = mirror.url(&path);
        async move { send(&url, Method::GET, &[]).await }
    });
    assert!(gate.reached(WAIT).await, "the upstream body never reached its hold");
    tokio::time::sleep(3 * IDLE).await;
    gate.open();
    pull.await.expect("client task").assert_blob(&blob);
}

#[tokio::test]
async fn connections_beyond_a_clients_share_are_closed_and_others_still_get_in() {
    let fake = FakeRegistry::start().await;
    let mirror = Mirror::builder(&fake)
        .connections(|limits| limits.max_per_client = 2)
        .start()
        .await;
    let before = Scrape::of(&mirror).await;
    let _held = [
        connect_from("127.0.0.2", mirror.addr()).await,
        connect_from("127.0.0.2", mirror.addr()).await,
    ];

    let mut third = connect_from("127.0.0.2", mirror.addr()).await;
    assert!(closed_after(&mut third).await < Duration::from_secs(2));
    let scrape = Scrape::of(&mirror).await;
    let series = r#"regmirror_connections_refused_total{cap="address"}"#;
    assert_eq!(scrape.delta_or_zero(&before, series), 1.0, "{scrape:?}");
    assert_eq!(
        mirror.get("/v2/").await.status,
        StatusCode::OK,
        "another client is served"
    );
}

#[tokio::test]
async fn connections_beyond_the_overall_cap_are_closed_until_one_ends() {
    let fake = FakeRegistry::start().await;
    let mirror = Mirror::builder(&fake)
        .connections(|limits| limits.max_open = 2)
        .start()
        .await;
    let first = connect_from("127.0.0.2", mirror.addr()).await;
    let _second = connect_from("127.0.0.3", mirror.addr()).await;

    let mut third = connect_from("127.0.0.4", mirror.addr()).await;
    assert!(closed_after(&mut third).await < Duration::from_secs(2));
    drop(first);
    assert_eq!(
        served_within(&mirror, Duration::from_secs(2)).await.status,
        StatusCode::OK
    );
}

/// The mirror sees a closed connection a moment after the client drops it: a few tries.
async fn served_within(mirror: &Mirror, within: Duration) -> Reply {
    let deadline = Instant::now() + within;
    loop {
        match try_send(&mirror.url("/v2/"), Method::GET, &[]).await {
            Ok(reply) => return reply,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no place for a new connection within {within:?}: {e}"),
        }
    }
}

fn ping(mirror: &Mirror) -> Request<Empty<Bytes>> {
    Request::get(mirror.url("/v2/")).body(Empty::new()).expect("request")
}
