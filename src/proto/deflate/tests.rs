use super::*;

/// Inflates with a window of `bits` (an independent decoder: flate2's miniz in raw mode does
/// not limit the window, so the distance bound is checked on the compressed stream instead).
fn roundtrip(message: &[u8], bits: u8, takeover: bool) -> Vec<u8> {
    let mut deflater = Deflater::new(takeover);
    let mut compressed = Vec::new();
    deflater.compress(message, bits, &mut compressed);
    assert!(!compressed.ends_with(&TAIL) || compressed.is_empty());
    let mut out = Vec::new();
    Inflater::new()
        .inflate(&compressed, message.len() + 1, &mut out)
        .expect("inflates");
    out
}

fn sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"{\"px\":101.25,\"qty\":3}"[i % 21] ^ (i / 700) as u8)
        .collect()
}

#[test]
fn roundtrips_at_every_window() {
    for bits in 8..=15 {
        for len in [0, 1, 100, 255, 256, 257, 5000, 70_000] {
            let message = sample(len);
            assert_eq!(roundtrip(&message, bits, false), message, "{bits} {len}");
        }
    }
}

#[test]
fn rfc_7692_example_hello() {
    // §7.2.3.1: "Hello" compressed without context takeover.
    let mut out = Vec::new();
    Inflater::new()
        .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, &mut out)
        .expect("valid");
    assert_eq!(out, b"Hello");
    // §7.2.3.3: a stored (uncompressed) block.
    Inflater::new()
        .inflate(
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            100,
            &mut out,
        )
        .expect("valid");
    assert_eq!(out, b"Hello");
}

#[test]
fn context_takeover_shrinks_the_second_message() {
    let message = sample(600);
    let mut deflater = Deflater::new(true);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    deflater.compress(&message, 15, &mut first);
    deflater.compress(&message, 15, &mut second);
    assert!(
        second.len() < first.len() / 2,
        "{} {}",
        first.len(),
        second.len()
    );
    let mut inflater = Inflater::new();
    let mut out = Vec::new();
    inflater.inflate(&first, 1000, &mut out).expect("first");
    assert_eq!(out, message);
    inflater.inflate(&second, 1000, &mut out).expect("second");
    assert_eq!(out, message);
}

#[test]
fn bomb_is_too_big_and_garbage_is_bad_data() {
    let zeros = vec![0u8; 10 << 20];
    let mut compressed = Vec::new();
    Deflater::new(false).compress(&zeros, 15, &mut compressed);
    assert!(compressed.len() < 20_000);
    let mut out = Vec::new();
    assert_eq!(
        Inflater::new().inflate(&compressed, 1 << 20, &mut out),
        Err(InflateError::TooBig)
    );
    assert!(out.capacity() <= (1 << 20) + INFLATE_STEP_BYTES * 2);
    assert_eq!(
        Inflater::new().inflate(&[0xff, 0xff, 0xff, 0xff], 100, &mut out),
        Err(InflateError::BadData)
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Compression in a debug build is slow: fewer cases than proptest's 256.
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any message, any window, with or without takeover: what one context compresses,
        /// one inflater reads back, message after message.
        #[test]
        fn compress_inflate_roundtrip(
            messages in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'{'), any::<u8>()], 0..3000),
                1..4,
            ),
            bits in 8u8..=15,
            takeover in any::<bool>(),
        ) {
            let mut deflater = Deflater::new(takeover);
            let mut inflater = Inflater::new();
            for message in &messages {
                let mut compressed = Vec::new();
                deflater.compress(message, bits, &mut compressed);
                if !takeover {
                    inflater.reset();
                }
                let mut out = Vec::new();
                prop_assert_eq!(inflater.inflate(&compressed, message.len(), &mut out), Ok(()));
                prop_assert_eq!(&out, message);
            }
        }

        /// Arbitrary input never panics, and the output never passes the limit.
        #[test]
        fn arbitrary_input_is_bounded(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            limit in 0usize..5000,
        ) {
            let mut out = Vec::new();
            let result = Inflater::new().inflate(&input, limit, &mut out);
            if result.is_ok() {
                prop_assert!(out.len() <= limit);
            }
        }
    }
}
