//! Single byte ranges (RFC 9110) over content of known size: `bytes=N-`, `bytes=N-M` and
//! `bytes=-N`. Several ranges at once are answered with the whole content, which clients
//! accept.

use http::HeaderValue;

#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    Full,
    /// Inclusive bounds, as `Content-Range` writes them.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

impl ByteRange {
    pub fn parse(header: Option<&HeaderValue>, size: u64) -> ByteRange {
        let Some(spec) = header
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("bytes="))
        else {
            return ByteRange::Full;
        };
        if spec.contains(',') {
            return ByteRange::Full;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return ByteRange::Full;
        };
        // A syntactically invalid range is ignored, as RFC 9110 asks: judged before any bound
        // is, so a malformed range is never answered 416.
        let (Some(first), Some(last)) = (bound(first), bound(last)) else {
            return ByteRange::Full;
        };
        match (first, last) {
            (Some(start), _) if start >= size => ByteRange::Unsatisfiable,
            (Some(start), Some(end)) if end >= start => ByteRange::Partial {
                start,
                end: end.min(size - 1),
            },
            (Some(start), None) => ByteRange::Partial { start, end: size - 1 },
            (None, Some(0)) => ByteRange::Unsatisfiable,
            (None, Some(_)) if size == 0 => ByteRange::Unsatisfiable,
            (None, Some(suffix)) => ByteRange::Partial {
                start: size - suffix.min(size),
                end: size - 1,
            },
            _ => ByteRange::Full,
        }
    }
}

/// One side of `first-last`: `Some(None)` when empty, `Some(Some(n))` for digits, `None` for
/// anything else, a sign included (which `u64::from_str` would take) or a number past u64.
fn bound(text: &str) -> Option<Option<u64>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(None);
    }
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok().map(Some))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, size: u64, want: ByteRange) {
        let value = HeaderValue::from_str(header).expect("header");
        assert_eq!(ByteRange::parse(Some(&value), size), want, "{header} of {size}");
    }

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(ByteRange::parse(None, 10), Full);
        check("bytes=0-", 10, Partial { start: 0, end: 9 });
        check("bytes=4-", 10, Partial { start: 4, end: 9 });
        check("bytes=2-5", 10, Partial { start: 2, end: 5 });
        check("bytes=2-50", 10, Partial { start: 2, end: 9 });
        check("bytes=-3", 10, Partial { start: 7, end: 9 });
        check("bytes=-30", 10, Partial { start: 0, end: 9 });
        check("bytes=10-", 10, Unsatisfiable);
        check("bytes=-0", 10, Unsatisfiable);
        check("bytes=0-", 0, Unsatisfiable);
        check("bytes=-5", 0, Unsatisfiable);
        check("bytes=5-2", 10, Full);
        check("bytes=0-1,4-5", 10, Full);
        check("items=0-1", 10, Full);
        check("bytes=x-y", 10, Full);
    }

    #[test]
    fn malformed_ranges_are_ignored_whatever_their_bounds() {
        use ByteRange::*;
        check("bytes=3-51y", 1, Full);
        check("bytes=3-x", 10, Full);
        check("bytes=+2-5", 10, Full);
        check("bytes=2-+5", 10, Full);
        check("bytes=-+3", 10, Full);
        check("bytes=99999999999999999999-", 10, Full);
        check("bytes= 2 - 5 ", 10, Partial { start: 2, end: 5 });
    }
}

#[cfg(test)]
mod properties;
