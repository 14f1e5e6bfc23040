//! The faults a test can script, and the requests each applies to.

use std::time::Duration;

use super::Gate;

/// Which requests a fault applies to.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every request to either listener.
    Any,
    /// Requests for one repository, including CDN requests redirected for it.
    Name(String),
    /// Manifest or blob requests (and CDN requests) for one tag or digest.
    Reference(String),
    /// The token endpoint.
    Token,
}

impl Target {
    pub fn name(name: &str) -> Target {
        Target::Name(name.to_owned())
    }

    pub fn reference(reference: &str) -> Target {
        Target::Reference(reference.to_owned())
    }
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status from the registry (not the CDN) with a matching error body:
    /// 401 carries a bearer challenge, 429 a `Retry-After` when given.
    Status { status: u16, retry_after: Option<u32> },
    /// Flip one byte in the middle of a served body; headers and length stay right.
    CorruptByte,
    /// Declare the full `Content-Length`, send half the body, then drop the connection.
    Truncate,
    /// Wait this long before answering normally.
    Stall(Duration),
    /// Wait at the gate before answering normally: a stall the test ends.
    Hold(Gate),
    /// Serve the body normally but pause this long before each 16 KiB chunk.
    Throttle(Duration),
    /// Send the first half of the body, then pause this long before the rest: a stalled
    /// transfer whose connection stays open.
    PauseMidBody(Duration),
    /// Send the first half of the body, then wait at the gate before the rest.
    HoldMidBody(Gate),
    /// Answer this status from the CDN (a 401 with the registry's bearer challenge): a host
    /// a redirect led to, asking for credentials that are not its to ask for.
    CdnStatus(u16),
    /// Announce this `Content-Length` for a body, whatever its real length.
    AnnounceLength(u64),
    /// Send a body without `Content-Length` (chunked), as a server that does not know it does.
    Unsized,
    /// Answer a blob range request with a 206 that starts one chunk before the asked-for
    /// byte, its `Content-Range` saying so: a resume that must not be spliced on.
    MisalignedRange,
}

impl Fault {
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            retry_after: None,
        }
    }

    pub fn too_many_requests(retry_after: u32) -> Fault {
        Fault::Status {
            status: 429,
            retry_after: Some(retry_after),
        }
    }
}
