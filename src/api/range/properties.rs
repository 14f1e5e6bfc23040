//! Properties of the Range parser: whatever a client sends, a partial answer lies inside the
//! content and a well-formed satisfiable range is honoured.

use proptest::prelude::*;

use super::*;

proptest! {
    #[test]
    fn a_partial_range_always_lies_within_the_content(
        header in "bytes=[0-9]{0,20}-[0-9]{0,20}|bytes=\\PC{0,30}|\\PC{0,30}",
        size in 0u64..1 << 40,
    ) {
        let Ok(value) = HeaderValue::from_str(&header) else { return Ok(()) };
        if let ByteRange::Partial { start, end } = ByteRange::parse(Some(&value), size) {
            prop_assert!(start <= end && end < size, "{header} of {size}: {start}-{end}");
        }
    }

    #[test]
    fn a_range_starting_inside_the_content_is_honoured(size in 1u64..1 << 40, start in 0u64..1 << 40, len in 0u64..1 << 20) {
        let start = start % size;
        let value = HeaderValue::from_str(&format!("bytes={start}-{}", start + len)).expect("header");
        let want = ByteRange::Partial { start, end: (start + len).min(size - 1) };
        prop_assert_eq!(ByteRange::parse(Some(&value), size), want);
    }
}
