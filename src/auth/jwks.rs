//! JSON Web Key Sets (RFC 7517 §5), the way identity providers publish their signing keys, so
//! that keys rotate without a restart: publish the new key next to the old one, reload, retire
//! the old one, reload.
//!
//! Owns: turning a JWK Set document into verification keys, each with its optional `kid`.
//! May not touch: files (the caller reads them), tokens, the clock.
//!
//! Rules: the document is a JSON object with a `keys` array (RFC 7517 §5.1). Keys the relay
//! cannot use for verifying HS256 or RS256 signatures are skipped, not refused: a provider's
//! set commonly also holds EC keys or encryption keys (`use` other than `sig`, RFC 7517 §4.2),
//! or keys for other algorithms (`alg`, §4.4). A usable RSA key (`kty` `RSA`, RFC 7518 §6.3.1:
//! `n` and `e`, base64url) must have a modulus of at least 2048 bits and an `oct` key (§6.4:
//! `k`) at least 32 bytes, as for the flags. Two usable keys with one `kid` are an error (the
//! token's `kid` must name one key), and so is a set with no usable key at all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::auth::jwt::{hs256_key, rs256_key_from_parts, VerificationKey};
use crate::auth::AuthConfigError;

/// Largest JWK Set document accepted.
pub const JWKS_BYTES_MAX: usize = 1 << 20;
/// Most usable keys in one set.
pub const JWKS_KEYS_MAX: usize = 64;
/// Longest `kid` accepted.
pub const KID_BYTES_MAX: usize = 256;

/// A usable key of a set, with its `kid` if it has one.
pub(crate) struct JwkEntry {
    pub(crate) kid: Option<String>,
    pub(crate) key: VerificationKey,
}

/// Parses a JWK Set document into the keys the relay can verify with.
pub(crate) fn parse_jwks(document: &[u8]) -> Result<Vec<JwkEntry>, AuthConfigError> {
    if document.len() > JWKS_BYTES_MAX {
        return Err(AuthConfigError::JwksMalformed);
    }
    let value: Value =
        serde_json::from_slice(document).map_err(|_| AuthConfigError::JwksMalformed)?;
    let Some(Value::Array(keys)) = value.get("keys") else {
        return Err(AuthConfigError::JwksMalformed);
    };
    let mut entries: Vec<JwkEntry> = Vec::new();
    for jwk in keys {
        let Value::Object(jwk) = jwk else {
            return Err(AuthConfigError::JwksMalformed);
        };
        let Some(entry) = usable_key(jwk)? else {
            continue;
        };
        let duplicate = entry.kid.is_some() && entries.iter().any(|e| e.kid == entry.kid);
        if duplicate {
            return Err(AuthConfigError::JwksDuplicateKid);
        }
        if entries.len() == JWKS_KEYS_MAX {
            return Err(AuthConfigError::JwksMalformed);
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(AuthConfigError::JwksNoUsableKey);
    }
    Ok(entries)
}

/// One JWK: `Ok(None)` when it is not for HS256/RS256 signatures (skipped).
fn usable_key(jwk: &Map<String, Value>) -> Result<Option<JwkEntry>, AuthConfigError> {
    let text = |name: &str| match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(AuthConfigError::JwksMalformed),
    };
    if text("use")?.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let kid = match text("kid")? {
        Some(kid) if kid.len() > KID_BYTES_MAX => return Err(AuthConfigError::JwksMalformed),
        kid => kid.map(str::to_string),
    };
    let alg = text("alg")?;
    let bytes = |name: &str| -> Result<Vec<u8>, AuthConfigError> {
        let b64 = text(name)?.ok_or(AuthConfigError::JwksMalformed)?;
        URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| AuthConfigError::JwksMalformed)
    };
    let key = match (text("kty")?, alg) {
        (Some("RSA"), None | Some("RS256")) => rs256_key_from_parts(&bytes("n")?, &bytes("e")?)?,
        (Some("oct"), None | Some("HS256")) => VerificationKey::Hs256(hs256_key(&bytes("k")?)?),
        (Some(_), _) => return Ok(None),
        (None, _) => return Err(AuthConfigError::JwksMalformed),
    };
    Ok(Some(JwkEntry { kid, key }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_keys::RSA_A_PUBLIC_SPKI_PEM as RSA_PUBLIC_PEM;
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    use serde_json::json;

    /// The test RSA key as JWK members `n` and `e`.
    fn rsa_jwk(kid: &str) -> Value {
        let key = rsa::PublicKey::from_public_key_pem(RSA_PUBLIC_PEM).expect("test key");
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
               "n": b64(&key.n().to_be_bytes_trimmed_vartime()),
               "e": b64(&key.e().to_be_bytes_trimmed_vartime())})
    }

    fn oct_jwk(kid: &str, secret: &[u8]) -> Value {
        json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(secret)})
    }

    fn parse(v: Value) -> Result<Vec<JwkEntry>, AuthConfigError> {
        parse_jwks(v.to_string().as_bytes())
    }

    #[test]
    fn usable_keys_are_kept_with_their_kid_and_others_skipped() {
        let set = json!({"keys": [
            rsa_jwk("r1"),
            oct_jwk("h1", &[7; 32]),
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "h384", "alg": "HS384", "k": "AA"},
        ]});
        let keys = parse(set).expect("valid set");
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("r1"), Some("h1")]);
        assert!(matches!(keys[0].key, VerificationKey::Rs256(_)));
        assert!(matches!(keys[1].key, VerificationKey::Hs256(_)));
    }

    #[test]
    fn each_rule_has_its_error() {
        use AuthConfigError::*;
        let cases = [
            (json!([]), JwksMalformed),
            (json!({"keys": "x"}), JwksMalformed),
            (json!({"keys": [1]}), JwksMalformed),
            (json!({"keys": [{"kid": "no kty"}]}), JwksMalformed),
            (
                json!({"keys": [{"kty": "oct", "k": "not base64!"}]}),
                JwksMalformed,
            ),
            (
                json!({"keys": [{"kty": "oct", "kid": 5, "k": "AA"}]}),
                JwksMalformed,
            ),
            (
                json!({"keys": [oct_jwk("short", &[1; 31])]}),
                Hs256SecretTooShort,
            ),
            (
                json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}),
                RsaKeyTooSmall,
            ),
            (
                json!({"keys": [oct_jwk("a", &[1; 32]), oct_jwk("a", &[2; 32])]}),
                JwksDuplicateKid,
            ),
            (
                json!({"keys": [{"kty": "EC", "crv": "P-256"}]}),
                JwksNoUsableKey,
            ),
            (json!({"keys": []}), JwksNoUsableKey),
        ];
        for (set, error) in cases {
            assert_eq!(parse(set.clone()).err(), Some(error), "{set}");
        }
        let too_many: Vec<Value> = (0..65).map(|i| oct_jwk(&i.to_string(), &[1; 32])).collect();
        assert_eq!(parse(json!({"keys": too_many})).err(), Some(JwksMalformed));
    }
}
