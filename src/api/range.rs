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
        let (first, last) = (first.trim(), last.trim());
        match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(start), _) if start >= size => ByteRange::Unsatisfiable,
            (Ok(start), Ok(end)) if end >= start => ByteRange::Partial {
                start,
                end: end.min(size - 1),
            },
            (Ok(start), Err(_)) if last.is_empty() => ByteRange::Partial { start, end: size - 1 },
            (Err(_), Ok(0)) if first.is_empty() => ByteRange::Unsatisfiable,
            (Err(_), Ok(_)) if first.is_empty() && size == 0 => ByteRange::Unsatisfiable,
            (Err(_), Ok(suffix)) if first.is_empty() => ByteRange::Partial {
                start: size - suffix.min(size),
                end: size - 1,
            },
            // A syntactically invalid range is ignored, as RFC 9110 asks.
            _ => ByteRange::Full,
        }
    }
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
}

#[cfg(test)]
mod properties;
