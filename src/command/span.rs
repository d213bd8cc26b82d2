//! Locates the verbatim byte span of one top-level member's value in the original text.
//!
//! Runs only after simd-json accepted the whole document, and walks simd-json's stage-1
//! structural indexes (byte offsets of `{ } [ ] : ,` and of the first byte of every string
//! and scalar) instead of the bytes themselves: a 1 KiB string value is one index, not 1024
//! bytes to scan for escapes. The indexes are offsets into the scratch copy, which is a
//! byte-for-byte copy of `text`, so they are valid offsets into `text`.
//!
//! Members are found by *ordinal* (position in the object), not by key, because keys may be
//! written with escapes (`"cont\u0065nt"`) that only the tape has decoded.
//!
//! Every lookup is checked (`get`): on an index layout this module does not expect, the
//! result is `None`, never a panic.

use std::ops::Range;

/// Span of the value of the `ordinal`-th member (0-based) of the root object of `text`.
///
/// `structurals` must be simd-json's structural indexes for `text`, whose root is an object.
/// `is_last` (the member is the object's last) enables the O(1) end: the value then ends
/// before the root's closing brace, the last structural, so a large container value is not
/// walked.
pub(crate) fn member_value_span(
    text: &[u8],
    structurals: &[u32],
    ordinal: usize,
    is_last: bool,
) -> Option<Range<usize>> {
    // Index 0 is the root `{`; a member is `key : value` followed by `,` or `}`.
    let mut key_index = 1;
    for _ in 0..ordinal {
        let (after_value, _) = value_end(text, structurals, key_index + 2)?;
        key_index = after_value + 1;
    }
    let value_index = key_index + 2;
    let start = offset(structurals, value_index)?;
    let end = match is_last {
        true => last_value_end(text, structurals, start)?,
        false => value_end(text, structurals, value_index)?.1,
    };
    (start < end).then_some(start..end)
}

/// Spans of the elements of the root array of `text` (`[e1,e2,…]`), in order.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) fn array_element_spans(text: &[u8], structurals: &[u32]) -> Option<Vec<Range<usize>>> {
    if byte_at(text, structurals, 0)? != b'[' {
        return None;
    }
    let mut spans = Vec::new();
    let mut index = 1;
    if byte_at(text, structurals, index)? == b']' {
        return Some(spans);
    }
    loop {
        let start = offset(structurals, index)?;
        let (after, end) = value_end(text, structurals, index)?;
        spans.push(start..end);
        match byte_at(text, structurals, after)? {
            b',' => index = after + 1,
            b']' => return Some(spans),
            _ => return None,
        }
    }
}

/// End of the root object's last value: the root's `}` with the whitespace before it trimmed.
fn last_value_end(text: &[u8], structurals: &[u32], start: usize) -> Option<usize> {
    let root_close = usize::try_from(*structurals.last()?).ok()?;
    if text.get(root_close) != Some(&b'}') {
        return None;
    }
    Some(root_close - trailing_whitespace(text.get(start..root_close)?))
}

/// For the value starting at structural `index`: the structural index just after it and the
/// byte offset one past its last byte.
fn value_end(text: &[u8], structurals: &[u32], index: usize) -> Option<(usize, usize)> {
    match byte_at(text, structurals, index)? {
        b'{' | b'[' => container_end(text, structurals, index),
        _ => scalar_end(text, structurals, index),
    }
}

/// A container ends at the bracket that brings the nesting depth back to zero. Brackets
/// inside strings are not structurals (a string is one index at its opening quote).
fn container_end(text: &[u8], structurals: &[u32], index: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for (walked, &position) in structurals.get(index..)?.iter().enumerate() {
        match text.get(usize::try_from(position).ok()?)? {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => continue,
        }
        if depth == 0 {
            let end = usize::try_from(position).ok()? + 1;
            return Some((index + walked + 1, end));
        }
    }
    None
}

/// A string or scalar inside an object always has a following structural (`,` or `}`); the
/// value ends at the last non-whitespace byte before it.
fn scalar_end(text: &[u8], structurals: &[u32], index: usize) -> Option<(usize, usize)> {
    let start = offset(structurals, index)?;
    let next = offset(structurals, index + 1)?;
    Some((
        index + 1,
        next - trailing_whitespace(text.get(start..next)?),
    ))
}

fn trailing_whitespace(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rev()
        .take_while(|&&b| is_json_whitespace(b))
        .count()
}

fn offset(structurals: &[u32], index: usize) -> Option<usize> {
    usize::try_from(*structurals.get(index)?).ok()
}

fn byte_at(text: &[u8], structurals: &[u32], index: usize) -> Option<u8> {
    text.get(offset(structurals, index)?).copied()
}

/// RFC 8259 section 2: insignificant whitespace is exactly these four bytes.
fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// simd-json's stage-1 structural offsets for `text`.
    fn structurals_of(text: &[u8]) -> Vec<u32> {
        let mut buffers = simd_json::Buffers::new(text.len());
        let mut copy = text.to_vec();
        simd_json::to_tape_with_buffers(&mut copy, &mut buffers).expect("valid test JSON");
        buffers.structural_indexes().to_vec()
    }

    /// The span found by walking, checked against the shortcut when `is_last`.
    fn span_text(text: &[u8], ordinal: usize, is_last: bool) -> Option<&[u8]> {
        let structurals = structurals_of(text);
        let walked = member_value_span(text, &structurals, ordinal, false);
        if is_last {
            assert_eq!(member_value_span(text, &structurals, ordinal, true), walked);
        }
        text.get(walked?)
    }

    /// Pins the stage-1 layout this module relies on, so a simd-json upgrade that changes
    /// it fails here rather than producing wrong spans.
    #[test]
    fn structurals_mark_string_and_scalar_starts() {
        let text = br#"{"a": 12 ,"b":"x"}"#;
        assert_eq!(structurals_of(text), vec![0, 1, 4, 6, 9, 10, 13, 14, 17]);
    }

    #[test]
    fn finds_each_array_element() {
        let text = br#"[ {"content":{"x":[1,"]"]},"seq":1} , 2,"s,]" ,[] ]"#;
        let spans = array_element_spans(text, &structurals_of(text)).unwrap();
        let found: Vec<&[u8]> = spans.into_iter().map(|r| &text[r]).collect();
        assert_eq!(
            found,
            [
                &br#"{"content":{"x":[1,"]"]},"seq":1}"#[..],
                b"2",
                br#""s,]""#,
                b"[]"
            ]
        );
        let empty = b"[ ]";
        assert_eq!(
            array_element_spans(empty, &structurals_of(empty)),
            Some(vec![])
        );
        let object = b"{}";
        assert_eq!(array_element_spans(object, &structurals_of(object)), None);
    }

    #[test]
    fn finds_each_member_value() {
        let text = br#"{ "a" : 12 , "b":"x,}" ,"c" :[1,{"d":"]"}], "e":{} }"#;
        assert_eq!(span_text(text, 0, false), Some(&b"12"[..]));
        assert_eq!(span_text(text, 1, false), Some(&br#""x,}""#[..]));
        assert_eq!(span_text(text, 2, false), Some(&br#"[1,{"d":"]"}]"#[..]));
        assert_eq!(span_text(text, 3, true), Some(&b"{}"[..]));
        assert_eq!(span_text(text, 4, false), None);
    }

    #[test]
    fn trims_whitespace_after_a_scalar() {
        let text = b"{\"a\":\ttrue \r\n\t}";
        assert_eq!(span_text(text, 0, true), Some(&b"true"[..]));
    }

    #[test]
    fn inconsistent_indexes_yield_none_not_panic() {
        for is_last in [false, true] {
            assert_eq!(member_value_span(b"{}", &[0, 1], 0, is_last), None);
            assert_eq!(member_value_span(b"{", &[0, 9, 99], 0, is_last), None);
            assert_eq!(
                member_value_span(b"{\"a\":[}", &[0, 1, 4, 5], 0, is_last),
                None
            );
            assert_eq!(member_value_span(b"", &[], 3, is_last), None);
        }
        // The shortcut refuses a last structural that is not a closing brace.
        assert_eq!(
            member_value_span(b"{\"a\":1,", &[0, 1, 4, 5, 6], 0, true),
            None
        );
    }
}
