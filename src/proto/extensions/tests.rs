use super::*;

const SHARED: ServerPolicy = ServerPolicy {
    takeover_available: false,
};
const TAKEOVER: ServerPolicy = ServerPolicy {
    takeover_available: true,
};

/// The response text for `fields` under `policy`, `None` when declined.
fn answer(fields: &[&str], policy: ServerPolicy) -> Option<String> {
    let params = negotiate_server(fields, policy).expect("well-formed header")?;
    let mut out = String::new();
    encode_response(&mut out, &params);
    Some(out)
}

#[test]
fn plain_offer_is_answered_without_takeover_in_shared_mode() {
    assert_eq!(
        answer(&["permessage-deflate"], SHARED).as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
}

/// Checks the answer to each one-field offer of `cases` (offer, policy, expected answer).
fn assert_answers(cases: &[(&str, ServerPolicy, Option<&str>)]) {
    for (offer, policy, expected) in cases {
        assert_eq!(answer(&[offer], *policy).as_deref(), *expected, "{offer}");
    }
}

#[test]
fn every_accepted_parameter_combination() {
    assert_answers(&[
        (
            "permessage-deflate; client_max_window_bits",
            SHARED,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        (
            "permessage-deflate; client_max_window_bits=10",
            SHARED,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            SHARED,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9"),
        ),
        (
            "permessage-deflate; server_max_window_bits=\"12\"",
            SHARED,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"),
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            TAKEOVER,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        ("permessage-deflate", TAKEOVER, Some("permessage-deflate")),
        (
            "permessage-deflate; client_no_context_takeover",
            TAKEOVER,
            Some("permessage-deflate; client_no_context_takeover"),
        ),
        (
            "permessage-deflate; server_max_window_bits=15; client_max_window_bits",
            TAKEOVER,
            Some("permessage-deflate; server_max_window_bits=15"),
        ),
    ]);
}

/// Declined (RFC 7692 §5): unknown parameter, invalid values, repeats.
#[test]
fn every_declined_offer() {
    assert_answers(&[
        ("permessage-deflate; foo", SHARED, None),
        ("permessage-deflate; server_max_window_bits", SHARED, None),
        ("permessage-deflate; server_max_window_bits=7", SHARED, None),
        (
            "permessage-deflate; server_max_window_bits=16",
            SHARED,
            None,
        ),
        (
            "permessage-deflate; server_max_window_bits=010",
            SHARED,
            None,
        ),
        (
            "permessage-deflate; client_max_window_bits=0x9",
            SHARED,
            None,
        ),
        (
            "permessage-deflate; server_no_context_takeover=1",
            SHARED,
            None,
        ),
        (
            "permessage-deflate; client_no_context_takeover=true",
            SHARED,
            None,
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            SHARED,
            None,
        ),
        (
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            SHARED,
            None,
        ),
        ("x-webkit-deflate-frame", SHARED, None),
    ]);
}

#[test]
fn the_first_acceptable_offer_wins() {
    assert_answers(&[
        (
            "permessage-deflate; server_max_window_bits=20, permessage-deflate; server_max_window_bits=10",
            SHARED,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"),
        ),
        (
            "foo, permessage-deflate; client_no_context_takeover, permessage-deflate",
            TAKEOVER,
            Some("permessage-deflate; client_no_context_takeover"),
        ),
    ]);
}

#[test]
fn offers_across_fields_keep_their_order() {
    assert_eq!(
        answer(
            &["permessage-deflate; bad", "permessage-deflate; server_max_window_bits=11"],
            SHARED
        )
        .as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11")
    );
}

#[test]
fn malformed_headers_are_refused() {
    for bad in [
        "permessage-deflate;",
        "permessage-deflate; =1",
        "permessage-deflate; a=",
        "permessage-deflate; a=\"1",
        "permessage-deflate; a=\"1 2\"",
        "permessage-deflate x",
        "; a",
        "permessage-deflate; a=1=2",
        "permessage-deflate; a; b; c; d; e; f; g; h; i",
    ] {
        assert_eq!(
            negotiate_server(&[bad], SHARED),
            Err(MalformedExtensions),
            "{bad}"
        );
    }
    let many = vec!["a"; OFFERS_MAX + 1].join(", ");
    assert_eq!(negotiate_server(&[&many], SHARED), Err(MalformedExtensions));
    // Empty list elements are allowed.
    assert!(negotiate_server(&[", permessage-deflate ,"], SHARED)
        .expect("valid")
        .is_some());
}

#[test]
fn client_checks_the_answer() {
    let ok = accept_client(&[
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    ])
    .expect("valid answer");
    assert!(ok.server_no_context_takeover && ok.client_no_context_takeover);
    let bits = accept_client(&["permessage-deflate; client_max_window_bits=9"]).expect("valid");
    assert_eq!(bits.client_max_window_bits, Some(9));
    for bad in [
        "permessage-deflate; foo",
        "permessage-deflate, permessage-deflate",
        "other",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits",
    ] {
        assert_eq!(accept_client(&[bad]), Err(MalformedExtensions), "{bad}");
    }
    assert_eq!(
        client_offer(true),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any header: no panic, and an accepted offer's answer is one a client accepts with
        /// the same parameters (what we answer is well-formed RFC 7692).
        #[test]
        fn any_header_is_answered_consistently(
            header in "[ -~]{0,120}",
            takeover in any::<bool>(),
        ) {
            let policy = ServerPolicy { takeover_available: takeover };
            if let Ok(Some(params)) = negotiate_server(&[&header], policy) {
                let mut answer = String::new();
                encode_response(&mut answer, &params);
                prop_assert_eq!(accept_client(&[&answer]), Ok(params));
            }
        }

        /// Offers built from the four parameters in any order and combination.
        #[test]
        fn generated_offers_are_accepted(
            params in proptest::collection::vec(0usize..6, 0..5),
        ) {
            let names = [
                "server_no_context_takeover",
                "client_no_context_takeover",
                "server_max_window_bits=9",
                "client_max_window_bits",
                "client_max_window_bits=12",
                "server_max_window_bits=15",
            ];
            let mut offer = String::from("permessage-deflate");
            for &p in &params {
                offer.push_str("; ");
                offer.push_str(names[p]);
            }
            // The same parameter twice (by name) must decline; otherwise accept.
            let base = |p: usize| names[p].split('=').next().unwrap_or_default();
            let mut seen: Vec<&str> = params.iter().map(|&p| base(p)).collect();
            seen.sort_unstable();
            let repeated = seen.windows(2).any(|w| w[0] == w[1]);
            let answer = negotiate_server(&[&offer], SHARED).expect("well-formed");
            prop_assert_eq!(answer.is_none(), repeated, "{}", offer);
        }
    }
}
