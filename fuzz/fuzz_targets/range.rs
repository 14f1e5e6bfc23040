//! The `Range` header over a blob of known size. A range answered is inside the blob, and is
//! the one RFC 9110's grammar gives; anything the grammar refuses is ignored (the whole blob),
//! as the RFC asks, and ignoring a range is always allowed.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use regmirror::fuzzing::ByteRange;

fuzz_target!(|input: &[u8]| {
    // The blob's size in decimal, a space, and the header: `10 bytes=2-5`.
    let Some(space) = input.iter().position(|&b| b == b' ') else {
        return;
    };
    let (size, header) = (&input[..space], &input[space + 1..]);
    let Some(size) = std::str::from_utf8(size).ok().and_then(|s| s.parse::<u64>().ok()) else {
        return;
    };
    let Ok(value) = HeaderValue::from_bytes(header) else {
        return;
    };
    let got = ByteRange::parse(Some(&value), size);
    if let ByteRange::Partial { start, end } = got {
        assert!(start <= end && end < size, "{value:?} of {size}: {start}-{end}");
    }
    let want = model(header, size);
    match (&got, &want) {
        (ByteRange::Full, _) => {}
        (got, Some(want)) => assert_eq!(got, want, "{value:?} of {size}"),
        (got, None) => panic!("{value:?} of {size}: answered {got:?} to a range the grammar refuses"),
    }
    if is_canonical(header) {
        if let Some(want) = want {
            assert_eq!(got, want, "{value:?} of {size}: a plain range is honoured");
        }
    }
});

/// RFC 9110 §14.1.2, one range: `bytes=first-[last]` or `bytes=-suffix`, digits only, with
/// optional whitespace around; `None` where the grammar refuses it, or a number is past u64
/// (then ignoring it is the only answer regmirror gives).
fn model(header: &[u8], size: u64) -> Option<ByteRange> {
    const OWS: [char; 2] = [' ', '\t'];
    let text = std::str::from_utf8(header).ok()?.trim_matches(OWS);
    let (first, last) = text.strip_prefix("bytes=")?.split_once('-')?;
    let number = |s: &str| -> Option<Option<u64>> {
        let s = s.trim_matches(OWS);
        if s.is_empty() {
            return Some(None);
        }
        s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse().ok())?.map(Some)
    };
    match (number(first)?, number(last)?) {
        (Some(start), _) if start >= size => Some(ByteRange::Unsatisfiable),
        (Some(start), Some(end)) if end >= start => Some(ByteRange::Partial {
            start,
            end: end.min(size - 1),
        }),
        (Some(start), None) => Some(ByteRange::Partial { start, end: size - 1 }),
        (None, Some(suffix)) => match suffix.min(size) {
            0 => Some(ByteRange::Unsatisfiable),
            len => Some(ByteRange::Partial {
                start: size - len,
                end: size - 1,
            }),
        },
        _ => None,
    }
}

/// `bytes=` and digits around one `-`: what every client sends.
fn is_canonical(header: &[u8]) -> bool {
    header.strip_prefix(b"bytes=").is_some_and(|spec| {
        spec.iter().filter(|&&b| b == b'-').count() == 1 && spec.iter().all(|b| b.is_ascii_digit() || *b == b'-')
    })
}
