//! End-to-end tests of [`Verifier`]: tokens are minted by an independent
//! implementation (the `jsonwebtoken` crate, a dev-dependency) so a bug shared
//! by our signer and verifier cannot hide.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::test_keys::{
    RSA_1024_PUBLIC_SPKI_PEM, RSA_A_PRIVATE_PKCS8_PEM, RSA_A_PUBLIC_PKCS1_PEM,
    RSA_A_PUBLIC_SPKI_PEM, RSA_B_PUBLIC_SPKI_PEM,
};
use super::*;

const SECRET: &[u8] = b"test-secret-0123456789abcdef-0123456789";
const NOW_S: u64 = 1_700_000_000;

fn hs256_config() -> AuthConfig {
    AuthConfig {
        hs256_secret: Some(SECRET.to_vec()),
        ..AuthConfig::default()
    }
}

fn rs256_config(pem: &str) -> AuthConfig {
    AuthConfig {
        rs256_public_key_pem: Some(pem.as_bytes().to_vec()),
        ..AuthConfig::default()
    }
}

fn verifier(cfg: &AuthConfig) -> Verifier {
    match Verifier::new(cfg) {
        Ok(Some(v)) => v,
        other => panic!("expected a verifier, got {other:?}"),
    }
}

fn mint(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    match encode(&Header::new(alg), claims, key) {
        Ok(token) => token,
        Err(e) => panic!("minting failed: {e}"),
    }
}

/// An HMAC signing key (`jsonwebtoken` refuses only an empty secret).
fn hmac_key(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret).unwrap_or_else(|e| panic!("HMAC key rejected: {e}"))
}

fn mint_hs256(claims: &Value) -> String {
    mint(Algorithm::HS256, &hmac_key(SECRET), claims)
}

fn mint_rs256(claims: &Value) -> String {
    match EncodingKey::from_rsa_pem(RSA_A_PRIVATE_PKCS8_PEM.as_bytes()) {
        Ok(key) => mint(Algorithm::RS256, &key, claims),
        Err(e) => panic!("test key rejected: {e}"),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn basic_claims() -> Value {
    json!({
        "sub": "alice",
        "exp": NOW_S + 60,
        "channels": {"subscribe": ["md.*", "room.42"], "publish": ["room.42"]}
    })
}

fn expected_basic_grant() -> Grant {
    let parse = |s: &str| ChannelPattern::parse(s).unwrap_or_else(|e| panic!("{e}"));
    Grant {
        sub: "alice".to_owned(),
        subscribe: Permissions::from_patterns(vec![parse("md.*"), parse("room.42")]),
        publish: Permissions::from_patterns(vec![parse("room.42")]),
        expires_at_unix_s: Some(NOW_S + 60),
    }
}

#[test]
fn valid_hs256_token_yields_exact_grant() {
    let token = mint_hs256(&basic_claims());
    let grant = verifier(&hs256_config()).verify(&token, NOW_S);
    assert_eq!(grant, Ok(expected_basic_grant()));
}

#[test]
fn valid_rs256_token_yields_exact_grant_with_either_pem_form() {
    let token = mint_rs256(&basic_claims());
    for pem in [RSA_A_PUBLIC_SPKI_PEM, RSA_A_PUBLIC_PKCS1_PEM] {
        let grant = verifier(&rs256_config(pem)).verify(&token, NOW_S);
        assert_eq!(grant, Ok(expected_basic_grant()));
    }
}

#[test]
fn grant_permissions_behave_as_claimed() {
    let grant = verifier(&hs256_config()).verify(&mint_hs256(&basic_claims()), NOW_S);
    let grant = grant.unwrap_or_else(|e| panic!("{e}"));
    assert!(grant.subscribe.allows("md.btc.usd"));
    assert!(grant.subscribe.allows("room.42"));
    assert!(!grant.subscribe.allows("md"));
    assert!(!grant.publish.allows("md.btc"));
    assert!(grant.publish.allows("room.42"));
}

#[test]
fn both_keys_configured_accepts_both_algorithms() {
    let cfg = AuthConfig {
        rs256_public_key_pem: Some(RSA_A_PUBLIC_SPKI_PEM.as_bytes().to_vec()),
        ..hs256_config()
    };
    let v = verifier(&cfg);
    assert!(v.verify(&mint_hs256(&basic_claims()), NOW_S).is_ok());
    assert!(v.verify(&mint_rs256(&basic_claims()), NOW_S).is_ok());
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    let v = verifier(&hs256_config());
    let expired = mint_hs256(&json!({"sub": "a", "exp": NOW_S - 1}));
    assert_eq!(v.verify(&expired, NOW_S), Err(AuthError::Expired));
    let early = mint_hs256(&json!({"sub": "a", "exp": NOW_S + 60, "nbf": NOW_S + 1}));
    assert_eq!(v.verify(&early, NOW_S), Err(AuthError::NotYetValid));
}

#[test]
fn leeway_bends_exp_and_nbf_by_exactly_its_amount() {
    let v = verifier(&AuthConfig {
        leeway_s: 10,
        ..hs256_config()
    });
    let exp_9_ago = mint_hs256(&json!({"sub": "a", "exp": NOW_S - 9}));
    let exp_10_ago = mint_hs256(&json!({"sub": "a", "exp": NOW_S - 10}));
    assert!(v.verify(&exp_9_ago, NOW_S).is_ok());
    assert_eq!(v.verify(&exp_10_ago, NOW_S), Err(AuthError::Expired));
    let nbf_in_10 = mint_hs256(&json!({"sub": "a", "exp": NOW_S + 60, "nbf": NOW_S + 10}));
    let nbf_in_11 = mint_hs256(&json!({"sub": "a", "exp": NOW_S + 60, "nbf": NOW_S + 11}));
    assert!(v.verify(&nbf_in_10, NOW_S).is_ok());
    assert_eq!(v.verify(&nbf_in_11, NOW_S), Err(AuthError::NotYetValid));
    assert_eq!(v.leeway_s(), 10);
}

#[test]
fn tampered_payload_fails_signature() {
    let token = mint_hs256(&basic_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims =
        json!({"sub": "mallory", "exp": NOW_S + 60, "channels": {"publish": ["*"]}});
    let forged_payload = b64(forged_claims.to_string().as_bytes());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let v = verifier(&hs256_config());
    assert_eq!(v.verify(&forged, NOW_S), Err(AuthError::BadSignature));
}

#[test]
fn tampered_signature_fails() {
    let token = mint_rs256(&basic_claims());
    let (signing_input, sig_b64) = token.rsplit_once('.').unwrap_or_else(|| panic!("no dot"));
    let mut sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .unwrap_or_else(|e| panic!("{e}"));
    sig[0] ^= 0x01;
    let forged = format!("{signing_input}.{}", b64(&sig));
    let v = verifier(&rs256_config(RSA_A_PUBLIC_SPKI_PEM));
    assert_eq!(v.verify(&forged, NOW_S), Err(AuthError::BadSignature));
}

#[test]
fn truncated_or_empty_signature_fails() {
    let token = mint_hs256(&basic_claims());
    let (signing_input, _) = token.rsplit_once('.').unwrap_or_else(|| panic!("no dot"));
    let v = verifier(&hs256_config());
    let empty = format!("{signing_input}.");
    assert_eq!(v.verify(&empty, NOW_S), Err(AuthError::BadSignature));
    let short = format!("{signing_input}.{}", b64(&[0_u8; 16]));
    assert_eq!(v.verify(&short, NOW_S), Err(AuthError::BadSignature));
}

#[test]
fn wrong_secret_fails_signature() {
    let other = hmac_key(b"another-secret-0123456789abcdef-012345");
    let token = mint(Algorithm::HS256, &other, &basic_claims());
    let v = verifier(&hs256_config());
    assert_eq!(v.verify(&token, NOW_S), Err(AuthError::BadSignature));
}

#[test]
fn wrong_rsa_key_fails_signature() {
    let token = mint_rs256(&basic_claims());
    let v = verifier(&rs256_config(RSA_B_PUBLIC_SPKI_PEM));
    assert_eq!(v.verify(&token, NOW_S), Err(AuthError::BadSignature));
}

#[test]
fn alg_none_is_refused() {
    let v = verifier(&hs256_config());
    let payload = b64(basic_claims().to_string().as_bytes());
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#] {
        let unsigned = format!("{}.{payload}.", b64(header.as_bytes()));
        assert_eq!(
            v.verify(&unsigned, NOW_S),
            Err(AuthError::AlgorithmNotAllowed)
        );
    }
}

#[test]
fn hs256_signed_with_rsa_public_key_is_refused_when_only_rs256_configured() {
    // Algorithm confusion: the attacker HMACs with the (public) RSA key bytes.
    let confused_key = hmac_key(RSA_A_PUBLIC_SPKI_PEM.as_bytes());
    let token = mint(Algorithm::HS256, &confused_key, &basic_claims());
    let v = verifier(&rs256_config(RSA_A_PUBLIC_SPKI_PEM));
    assert_eq!(v.verify(&token, NOW_S), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn rs256_token_is_refused_when_only_hs256_configured() {
    let token = mint_rs256(&basic_claims());
    let v = verifier(&hs256_config());
    assert_eq!(v.verify(&token, NOW_S), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn other_hmac_and_rsa_algorithms_are_refused() {
    let cfg = AuthConfig {
        rs256_public_key_pem: Some(RSA_A_PUBLIC_SPKI_PEM.as_bytes().to_vec()),
        ..hs256_config()
    };
    let v = verifier(&cfg);
    let hs512 = mint(Algorithm::HS512, &hmac_key(SECRET), &basic_claims());
    assert_eq!(v.verify(&hs512, NOW_S), Err(AuthError::AlgorithmNotAllowed));
    let rsa_key = EncodingKey::from_rsa_pem(RSA_A_PRIVATE_PKCS8_PEM.as_bytes());
    let rsa_key = rsa_key.unwrap_or_else(|e| panic!("{e}"));
    let ps256 = mint(Algorithm::PS256, &rsa_key, &basic_claims());
    assert_eq!(v.verify(&ps256, NOW_S), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn wrong_audience_and_issuer_are_refused() {
    let v = verifier(&AuthConfig {
        audience: Some("wsrelay".to_owned()),
        issuer: Some("https://auth.example".to_owned()),
        ..hs256_config()
    });
    let good =
        json!({"sub": "a", "exp": NOW_S + 60, "aud": "wsrelay", "iss": "https://auth.example"});
    assert!(v.verify(&mint_hs256(&good), NOW_S).is_ok());
    let bad_aud =
        json!({"sub": "a", "exp": NOW_S + 60, "aud": "other", "iss": "https://auth.example"});
    assert_eq!(
        v.verify(&mint_hs256(&bad_aud), NOW_S),
        Err(AuthError::WrongAudience)
    );
    let bad_iss =
        json!({"sub": "a", "exp": NOW_S + 60, "aud": "wsrelay", "iss": "https://evil.example"});
    assert_eq!(
        v.verify(&mint_hs256(&bad_iss), NOW_S),
        Err(AuthError::WrongIssuer)
    );
}

#[test]
fn missing_subject_is_refused() {
    let token = mint_hs256(&json!({"exp": NOW_S + 60, "channels": {"publish": ["*"]}}));
    let v = verifier(&hs256_config());
    assert_eq!(v.verify(&token, NOW_S), Err(AuthError::MissingSubject));
}

#[test]
fn missing_channels_claim_denies_everything() {
    let token = mint_hs256(&json!({"sub": "a", "exp": NOW_S + 60}));
    let grant = verifier(&hs256_config()).verify(&token, NOW_S);
    let grant = grant.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(grant.subscribe, Permissions::none());
    assert_eq!(grant.publish, Permissions::none());
}

#[test]
fn garbage_strings_are_malformed() {
    let v = verifier(&hs256_config());
    let garbage = [
        "",
        ".",
        "..",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "a.b.c.d.e",
        "Bearer x.y.z",
        "ééé.ééé.ééé",
        "{\"alg\":\"HS256\"}..",
    ];
    for token in garbage {
        assert_eq!(
            v.verify(token, NOW_S),
            Err(AuthError::Malformed),
            "{token:?}"
        );
    }
}

#[test]
fn signed_non_json_claims_are_malformed() {
    let header = b64(br#"{"alg":"HS256"}"#);
    let payload = b64(b"not json");
    let signing_input = format!("{header}.{payload}");
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(SECRET)
        .unwrap_or_else(|e| panic!("{e}"));
    hmac::Mac::update(&mut mac, signing_input.as_bytes());
    let tag = hmac::Mac::finalize(mac).into_bytes();
    let token = format!("{signing_input}.{}", b64(&tag));
    let v = verifier(&hs256_config());
    assert_eq!(v.verify(&token, NOW_S), Err(AuthError::Malformed));
}

#[test]
fn oversize_token_is_refused_before_crypto() {
    let v = verifier(&hs256_config());
    let padded = |pad_bytes: usize| {
        mint_hs256(&json!({"sub": "a", "exp": NOW_S + 60, "pad": "x".repeat(pad_bytes)}))
    };
    let fits = padded(6000);
    assert!(fits.len() <= TOKEN_BYTES_MAX, "{}", fits.len());
    assert!(v.verify(&fits, NOW_S).is_ok());
    let too_big = padded(6200);
    assert!(too_big.len() > TOKEN_BYTES_MAX, "{}", too_big.len());
    assert_eq!(v.verify(&too_big, NOW_S), Err(AuthError::Malformed));
    let junk = "a".repeat(TOKEN_BYTES_MAX + 1);
    assert_eq!(v.verify(&junk, NOW_S), Err(AuthError::Malformed));
}

#[test]
fn no_key_means_auth_off() {
    let cfg = AuthConfig {
        audience: Some("wsrelay".to_owned()),
        ..AuthConfig::default()
    };
    assert!(matches!(Verifier::new(&cfg), Ok(None)));
}

#[test]
fn config_errors_are_specific() {
    let err = |cfg: &AuthConfig| Verifier::new(cfg).err();
    assert_eq!(
        err(&rs256_config("not a pem")),
        Some(AuthConfigError::InvalidRsaPublicKey)
    );
    assert_eq!(
        err(&rs256_config(RSA_1024_PUBLIC_SPKI_PEM)),
        Some(AuthConfigError::RsaKeyTooSmall)
    );
    let private_as_public = rs256_config(RSA_A_PRIVATE_PKCS8_PEM);
    assert_eq!(
        err(&private_as_public),
        Some(AuthConfigError::InvalidRsaPublicKey)
    );
    let short = AuthConfig {
        hs256_secret: Some(b"short".to_vec()),
        ..AuthConfig::default()
    };
    assert_eq!(err(&short), Some(AuthConfigError::Hs256SecretTooShort));
    let lax = AuthConfig {
        leeway_s: LEEWAY_S_MAX + 1,
        ..hs256_config()
    };
    assert_eq!(err(&lax), Some(AuthConfigError::LeewayTooLarge));
}

#[test]
fn pem_with_surrounding_whitespace_is_accepted() {
    let padded = format!("\n  {RSA_A_PUBLIC_SPKI_PEM}\n\n");
    assert!(matches!(Verifier::new(&rs256_config(&padded)), Ok(Some(_))));
}

#[test]
fn verifier_is_shareable_across_event_loops() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<Grant>();
}

#[test]
fn debug_output_never_shows_the_secret() {
    let cfg = hs256_config();
    let secret_text = String::from_utf8_lossy(SECRET).into_owned();
    assert!(!format!("{cfg:?}").contains(&secret_text));
    let shown = format!("{:?}", verifier(&cfg));
    assert!(!shown.contains(&secret_text));
    assert!(shown.contains("hs256: true"), "{shown}");
}

#[test]
fn error_labels_and_messages_are_exact() {
    let all = [
        (AuthError::Malformed, "malformed"),
        (AuthError::BadSignature, "bad_signature"),
        (AuthError::AlgorithmNotAllowed, "algorithm_not_allowed"),
        (AuthError::Expired, "expired"),
        (AuthError::NotYetValid, "not_yet_valid"),
        (AuthError::WrongAudience, "wrong_audience"),
        (AuthError::WrongIssuer, "wrong_issuer"),
        (AuthError::MissingSubject, "missing_subject"),
        (AuthError::BadClaims, "bad_claims"),
    ];
    for (err, label) in all {
        assert_eq!(err.kind(), label);
        assert_eq!(err.to_string(), err.message());
    }
    assert_eq!(AuthError::Expired.to_string(), "token has expired");
}
