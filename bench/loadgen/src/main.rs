//! loadgen: keep-alive HTTP/1.1 requests over N connections for D seconds, one thread per
//! connection, then one line: `requests=… errors=… seconds=… rps=… bytes=…`.
//!
//! Usage: loadgen [-X METHOD] [-c CONNECTIONS] [-d SECONDS] [-H 'Name: value']... http://HOST:PORT/PATH
//!
//! Bounded: at most 1024 connections and 600 s; a connection that fails 100 times gives up.
//! Plain HTTP only, responses must carry Content-Length (registries' manifests and blobs do).
//! A non-2xx answer counts as an error, so a run that measured 404s cannot pass for one that
//! measured hits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const MAX_CONNECTIONS: usize = 1024;
const MAX_SECONDS: u64 = 600;
const MAX_FAILURES_PER_CONNECTION: u64 = 100;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    method: String,
    connections: usize,
    seconds: u64,
    headers: Vec<String>,
    host: String,
    path: String,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    errors: u64,
    bytes: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        method: "GET".into(),
        connections: 16,
        seconds: 5,
        headers: Vec::new(),
        host: String::new(),
        path: String::new(),
    };
    let mut it = std::env::args().skip(1);
    let mut url = None;
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "-X" => args.method = value()?,
            "-c" => args.connections = value()?.parse().map_err(|e| format!("-c: {e}"))?,
            "-d" => args.seconds = value()?.parse().map_err(|e| format!("-d: {e}"))?,
            "-H" => args.headers.push(value()?),
            _ if url.is_none() && !arg.starts_with('-') => url = Some(arg),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    let url = url.ok_or("no URL")?;
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    args.host = host.to_owned();
    args.path = if path.is_empty() { "/".into() } else { path.to_owned() };
    if !(1..=MAX_CONNECTIONS).contains(&args.connections) || !(1..=MAX_SECONDS).contains(&args.seconds) {
        return Err(format!("connections 1..={MAX_CONNECTIONS}, seconds 1..={MAX_SECONDS}"));
    }
    Ok(args)
}

/// Reads one response; returns (status, body bytes read).
fn read_response(reader: &mut BufReader<TcpStream>, head: bool, scratch: &mut [u8]) -> std::io::Result<(u16, u64)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(bad("connection closed"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("closed in headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<u64>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked bodies are not supported"));
            }
        }
    }
    if head {
        return Ok((status, 0));
    }
    let length = length.ok_or_else(|| bad("no content-length"))?;
    let mut left = length;
    while left > 0 {
        let want = scratch.len().min(left as usize);
        let n = reader.read(&mut scratch[..want])?;
        if n == 0 {
            return Err(bad("closed in body"));
        }
        left -= n as u64;
    }
    Ok((status, length))
}

fn connect(host: &str) -> std::io::Result<BufReader<TcpStream>> {
    let addr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(BufReader::with_capacity(64 << 10, stream))
}

/// One connection's loop until `deadline`, reconnecting after an error.
fn drive(args: &Args, request: &[u8], deadline: Instant) -> Tally {
    let head = args.method.eq_ignore_ascii_case("HEAD");
    let mut tally = Tally::default();
    let mut scratch = vec![0u8; 256 << 10];
    let mut failures = 0;
    let mut conn = None;
    while Instant::now() < deadline && failures < MAX_FAILURES_PER_CONNECTION {
        if conn.is_none() {
            match connect(&args.host) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    failures += 1;
                    tally.errors += 1;
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some(reader) = conn.as_mut() else { continue };
        let outcome = reader
            .get_mut()
            .write_all(request)
            .and_then(|()| read_response(reader, head, &mut scratch));
        match outcome {
            Ok((status, bytes)) => {
                tally.requests += 1;
                tally.bytes += bytes;
                if !(200..300).contains(&status) {
                    tally.errors += 1;
                }
            }
            Err(_) => {
                failures += 1;
                tally.errors += 1;
                conn = None;
            }
        }
    }
    tally
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("loadgen: {e}\nusage: loadgen [-X METHOD] [-c N] [-d SECONDS] [-H 'Name: value']... http://HOST:PORT/PATH");
            return ExitCode::from(2);
        }
    };
    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: loadgen\r\n",
        args.method, args.path, args.host
    );
    for h in &args.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request = Arc::new(request.into_bytes());
    let barrier = Arc::new(Barrier::new(args.connections + 1));
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (args, request, barrier) = (args.clone(), request.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                drive(&args, &request, Instant::now() + Duration::from_secs(args.seconds))
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut total = Tally::default();
    for w in workers {
        let t = w.join().unwrap_or_default();
        total.requests += t.requests;
        total.errors += t.errors;
        total.bytes += t.bytes;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "requests={} errors={} seconds={secs:.3} rps={:.1} bytes={}",
        total.requests,
        total.errors,
        total.requests as f64 / secs,
        total.bytes
    );
    if total.requests == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
