//! Key selection by `kid` with a JWK Set next to the flags' keys, through [`Verifier`], with
//! tokens minted by `jsonwebtoken` (an independent implementation).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};

use super::test_keys::{RSA_A_PRIVATE_PKCS8_PEM, RSA_A_PUBLIC_SPKI_PEM};
use super::*;

const NOW_S: u64 = 1_700_000_000;
const K1: &[u8] = b"first-secret-0123456789abcdef-0123456789";
const K2: &[u8] = b"second-secret-0123456789abcdef-012345678";
const FLAG: &[u8] = b"flag-secret-0123456789abcdef-0123456789ab";

fn claims() -> Value {
    json!({"sub": "alice", "exp": NOW_S + 60})
}

fn mint(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, &claims(), key).unwrap_or_else(|e| panic!("minting failed: {e}"))
}

fn hs(kid: Option<&str>, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret).unwrap_or_else(|e| panic!("{e}"));
    mint(Algorithm::HS256, kid, &key)
}

fn oct(kid: &str, secret: &[u8]) -> Value {
    json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(secret)})
}

fn rsa_a(kid: &str) -> Value {
    let key = rsa::PublicKey::from_public_key_pem(RSA_A_PUBLIC_SPKI_PEM).expect("test key");
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    json!({"kty": "RSA", "kid": kid, "n": b64(&key.n().to_be_bytes_trimmed_vartime()),
           "e": b64(&key.e().to_be_bytes_trimmed_vartime())})
}

fn verifier(hs256_secret: Option<&[u8]>, keys: &[Value]) -> Verifier {
    let cfg = AuthConfig {
        hs256_secret: hs256_secret.map(<[u8]>::to_vec),
        jwks: Some(json!({ "keys": keys }).to_string().into_bytes()),
        ..AuthConfig::default()
    };
    match Verifier::new(&cfg) {
        Ok(Some(v)) => v,
        other => panic!("expected a verifier, got {other:?}"),
    }
}

fn outcome(v: &Verifier, token: &str) -> Result<String, AuthError> {
    v.verify(token, NOW_S).map(|g| g.sub)
}

#[test]
fn the_kid_names_the_key() {
    let v = verifier(None, &[oct("k1", K1), oct("k2", K2)]);
    assert_eq!(outcome(&v, &hs(Some("k1"), K1)), Ok("alice".into()));
    assert_eq!(outcome(&v, &hs(Some("k2"), K2)), Ok("alice".into()));
    assert_eq!(
        outcome(&v, &hs(Some("k1"), K2)),
        Err(AuthError::BadSignature)
    );
    assert_eq!(outcome(&v, &hs(Some("k3"), K1)), Err(AuthError::UnknownKey));
    // Two keys fit a token that names none: refused rather than tried in turn.
    assert_eq!(outcome(&v, &hs(None, K1)), Err(AuthError::UnknownKey));
}

#[test]
fn a_token_without_kid_uses_the_only_key_of_its_algorithm() {
    let v = verifier(None, &[oct("k1", K1), rsa_a("r1")]);
    assert_eq!(outcome(&v, &hs(None, K1)), Ok("alice".into()));
    let rsa = EncodingKey::from_rsa_pem(RSA_A_PRIVATE_PKCS8_PEM.as_bytes()).expect("test key");
    assert_eq!(
        outcome(&v, &mint(Algorithm::RS256, None, &rsa)),
        Ok("alice".into())
    );
    assert_eq!(
        outcome(&v, &mint(Algorithm::RS256, Some("r1"), &rsa)),
        Ok("alice".into())
    );
    assert_eq!(
        outcome(&v, &mint(Algorithm::RS256, Some("k1"), &rsa)),
        Err(AuthError::UnknownKey),
        "k1 is an HS256 key: an RS256 token cannot name it"
    );
}

#[test]
fn a_flag_key_serves_tokens_whose_kid_the_set_does_not_know() {
    let v = verifier(Some(FLAG), &[oct("k1", K1)]);
    assert_eq!(outcome(&v, &hs(Some("k1"), K1)), Ok("alice".into()));
    assert_eq!(outcome(&v, &hs(Some("legacy"), FLAG)), Ok("alice".into()));
    assert_eq!(
        outcome(&v, &hs(Some("legacy"), K1)),
        Err(AuthError::BadSignature)
    );
    assert_eq!(outcome(&v, &hs(None, FLAG)), Err(AuthError::UnknownKey));
}

#[test]
fn an_algorithm_without_keys_is_not_allowed_whatever_the_kid() {
    let v = verifier(None, &[rsa_a("r1")]);
    assert_eq!(
        outcome(&v, &hs(Some("r1"), K1)),
        Err(AuthError::AlgorithmNotAllowed)
    );
}

#[test]
fn a_kid_that_is_not_a_string_is_malformed() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":7}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    let v = verifier(None, &[oct("k1", K1)]);
    let token = format!("{header}.{payload}.AAAA");
    assert_eq!(outcome(&v, &token), Err(AuthError::Malformed));
}
