//! JWS compact serialization (RFC 7515 §7.1) and signature checks for the two
//! algorithms the relay accepts: HS256 and RS256 (RFC 7518 §3.2, §3.3).
//!
//! Owns: splitting a token into its three segments, decoding the protected
//! header, choosing a key from `alg`, and checking the signature over the JWS
//! signing input. Returns the still-unparsed claims bytes only after the
//! signature has been verified, so no untrusted claims JSON is ever parsed.
//! May not touch: claims semantics (see `claims.rs`), the clock, any I/O.
//!
//! Invariants:
//! - The key is chosen by the verifier's configuration, never by the token:
//!   `alg` only selects among configured keys, so an HS256 token can never be
//!   checked against RSA public-key bytes (the classic algorithm-confusion
//!   attack) and `alg: none` has no key at all.
//! - HMAC tags are compared in constant time (`Mac::verify_slice`).
//! - Work before the signature check is bounded by `TOKEN_BYTES_MAX` input.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs1v15::{Signature as RsaSignature, VerifyingKey as RsaVerifyingKey};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::auth::{AuthConfigError, AuthError, TOKEN_BYTES_MAX};

/// RFC 7518 §3.2: "A key of the same size as the hash output (for instance,
/// 256 bits for "HS256") or larger MUST be used with this algorithm."
pub const HS256_SECRET_BYTES_MIN: usize = 32;

/// RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used with these
/// algorithms."
pub const RS256_MODULUS_BITS_MIN: u32 = 2048;

/// The `alg` header values this verifier can ever accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JwsAlgorithm {
    Hs256,
    Rs256,
}

/// The three segments of a compact JWS, still base64url-encoded.
struct CompactJws<'a> {
    header_b64: &'a str,
    payload_b64: &'a str,
    signature_b64: &'a str,
    /// `header_b64 '.' payload_b64`: the bytes the signature covers (RFC 7515 §5.2 step 8).
    signing_input: &'a str,
}

/// One verification key: its algorithm is fixed by its type, never by a token.
pub(crate) enum VerificationKey {
    /// Keyed HMAC state, cloned per token so the key schedule runs once.
    Hs256(Hmac<Sha256>),
    /// An RSA public key bound to RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256(RsaVerifyingKey<Sha256>),
}

impl VerificationKey {
    fn algorithm(&self) -> JwsAlgorithm {
        match self {
            Self::Hs256(_) => JwsAlgorithm::Hs256,
            Self::Rs256(_) => JwsAlgorithm::Rs256,
        }
    }

    fn check(&self, signing_input: &[u8], signature: &[u8]) -> Result<(), AuthError> {
        match self {
            Self::Hs256(key) => check_hs256(key, signing_input, signature),
            Self::Rs256(key) => check_rs256(key, signing_input, signature),
        }
    }
}

/// The configured verification keys: those of the flags (no `kid`) and those of a JWK Set
/// (`jwks.rs`, usually each with a `kid`).
///
/// Which key checks a token (RFC 7515 §4.1.4: `kid` is a hint to the key): among the keys of
/// the token's `alg`, the one whose `kid` is the token's; a token naming a `kid` no key has may
/// still use the only key of its `alg` that has no `kid` (a flag's key, so that adding
/// `kid`s on the issuer's side breaks nothing). A token without `kid` uses the only key of its
/// `alg`. No key of the `alg`: `algorithm_not_allowed`; none or several that could be meant:
/// `unknown_key`.
pub(crate) struct SignatureKeys {
    keys: Vec<(Option<String>, VerificationKey)>,
}

impl SignatureKeys {
    /// Builds the keys; `Ok(None)` when none is configured (auth off).
    pub(crate) fn new(
        hs256_secret: Option<&[u8]>,
        rs256_public_key_pem: Option<&[u8]>,
        jwks: Option<&[u8]>,
    ) -> Result<Option<Self>, AuthConfigError> {
        let mut keys = Vec::new();
        if let Some(secret) = hs256_secret {
            keys.push((None, VerificationKey::Hs256(hs256_key(secret)?)));
        }
        if let Some(pem) = rs256_public_key_pem {
            keys.push((None, VerificationKey::Rs256(rs256_key(pem)?)));
        }
        if let Some(document) = jwks {
            for entry in crate::auth::jwks::parse_jwks(document)? {
                keys.push((entry.kid, entry.key));
            }
        }
        Ok((!keys.is_empty()).then_some(Self { keys }))
    }

    /// Whether an HS256 key is configured.
    pub(crate) fn hs256_enabled(&self) -> bool {
        self.count(JwsAlgorithm::Hs256) > 0
    }

    /// Whether an RS256 key is configured.
    pub(crate) fn rs256_enabled(&self) -> bool {
        self.count(JwsAlgorithm::Rs256) > 0
    }

    fn count(&self, alg: JwsAlgorithm) -> usize {
        self.keys
            .iter()
            .filter(|(_, k)| k.algorithm() == alg)
            .count()
    }

    /// Checks structure, `alg` and signature; returns the decoded claims bytes.
    pub(crate) fn verified_payload(&self, token: &str) -> Result<Vec<u8>, AuthError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::Malformed);
        }
        let jws = split_compact(token)?;
        let (alg, kid) = header_fields(&decode_segment(jws.header_b64)?)?;
        let signature = decode_segment(jws.signature_b64)?;
        let key = self.key_for(alg, kid.as_deref())?;
        key.check(jws.signing_input.as_bytes(), &signature)?;
        decode_segment(jws.payload_b64)
    }

    /// The key that checks a token of `alg` naming `kid` (see the type's rules).
    fn key_for(&self, alg: JwsAlgorithm, kid: Option<&str>) -> Result<&VerificationKey, AuthError> {
        let of_alg = || self.keys.iter().filter(move |(_, k)| k.algorithm() == alg);
        if of_alg().next().is_none() {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let Some(kid) = kid else {
            return only(of_alg().map(|(_, key)| key));
        };
        match of_alg().find(|(k, _)| k.as_deref() == Some(kid)) {
            Some((_, key)) => Ok(key),
            None => only(of_alg().filter(|(k, _)| k.is_none()).map(|(_, key)| key)),
        }
    }
}

pub(crate) fn hs256_key(secret: &[u8]) -> Result<Hmac<Sha256>, AuthConfigError> {
    if secret.len() < HS256_SECRET_BYTES_MIN {
        return Err(AuthConfigError::Hs256SecretTooShort);
    }
    // HMAC accepts any key length, so this error path is unreachable in practice.
    Hmac::<Sha256>::new_from_slice(secret).map_err(|_| AuthConfigError::Hs256SecretTooShort)
}

/// Accepts SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`) PEM.
fn rs256_key(pem: &[u8]) -> Result<RsaVerifyingKey<Sha256>, AuthConfigError> {
    let text = std::str::from_utf8(pem).map_err(|_| AuthConfigError::InvalidRsaPublicKey)?;
    let text = text.trim();
    let key = rsa::PublicKey::from_public_key_pem(text)
        .or_else(|_| rsa::PublicKey::from_pkcs1_pem(text))
        .map_err(|_| AuthConfigError::InvalidRsaPublicKey)?;
    if key.n().bit_width() < RS256_MODULUS_BITS_MIN {
        return Err(AuthConfigError::RsaKeyTooSmall);
    }
    // `new` (not `new_unprefixed`) binds the SHA-256 DigestInfo prefix that
    // RSASSA-PKCS1-v1_5 requires (RFC 8017 §9.2).
    Ok(RsaVerifyingKey::new(key))
}

/// The one key `keys` yields; none or several: `unknown_key`.
fn only<'k>(
    mut keys: impl Iterator<Item = &'k VerificationKey>,
) -> Result<&'k VerificationKey, AuthError> {
    match (keys.next(), keys.next()) {
        (Some(key), None) => Ok(key),
        _ => Err(AuthError::UnknownKey),
    }
}

/// An RS256 key from its modulus and public exponent, big-endian (a JWK's `n` and `e`,
/// RFC 7518 §6.3.1), with the same size rule as a PEM key.
pub(crate) fn rs256_key_from_parts(n: &[u8], e: &[u8]) -> Result<VerificationKey, AuthConfigError> {
    let n = rsa::BoxedUint::from_be_slice_vartime(n);
    let e = rsa::BoxedUint::from_be_slice_vartime(e);
    if n.bit_width_vartime() < RS256_MODULUS_BITS_MIN {
        return Err(AuthConfigError::RsaKeyTooSmall);
    }
    let key = rsa::PublicKey::new(n, e).map_err(|_| AuthConfigError::InvalidRsaPublicKey)?;
    Ok(VerificationKey::Rs256(RsaVerifyingKey::new(key)))
}

/// RFC 7515 §7.1: exactly three segments; a JWE (five segments) or a JWS JSON
/// serialization is not a token this relay accepts.
fn split_compact(token: &str) -> Result<CompactJws<'_>, AuthError> {
    let (signing_input, signature_b64) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
    let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(AuthError::Malformed)?;
    if payload_b64.contains('.') {
        return Err(AuthError::Malformed);
    }
    Ok(CompactJws {
        header_b64,
        payload_b64,
        signature_b64,
        signing_input,
    })
}

/// RFC 7515 §2: segments are base64url *without* padding. The engine also
/// rejects non-canonical trailing bits, so one signature has one encoding.
fn decode_segment(segment_b64: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(segment_b64)
        .map_err(|_| AuthError::Malformed)
}

/// Parses the protected header: `alg` mapped to an accepted algorithm, and `kid` if present.
fn header_fields(header_json: &[u8]) -> Result<(JwsAlgorithm, Option<String>), AuthError> {
    let mut header = parse_json_object(header_json)?;
    // RFC 7515 §4.1.11: a recipient that does not understand every extension
    // listed in `crit` MUST reject the JWS; this verifier understands none.
    if header.contains_key("crit") {
        return Err(AuthError::Malformed);
    }
    // RFC 7515 §4.1.1: `alg` MUST be present.
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => algorithm_from_name(alg)?,
        _ => return Err(AuthError::Malformed),
    };
    // RFC 7515 §4.1.4: `kid`, when present, is a string.
    let kid = match header.remove("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid),
        Some(_) => return Err(AuthError::Malformed),
    };
    Ok((alg, kid))
}

/// Parses the protected header and maps `alg` to an accepted algorithm.
#[cfg(test)]
fn header_algorithm(header_json: &[u8]) -> Result<JwsAlgorithm, AuthError> {
    header_fields(header_json).map(|(alg, _)| alg)
}

/// Exact, case-sensitive names (RFC 7518 §3.1); everything else, `none`
/// included (RFC 7518 §3.6), is refused.
fn algorithm_from_name(alg: &str) -> Result<JwsAlgorithm, AuthError> {
    match alg {
        "HS256" => Ok(JwsAlgorithm::Hs256),
        "RS256" => Ok(JwsAlgorithm::Rs256),
        _ => Err(AuthError::AlgorithmNotAllowed),
    }
}

/// RFC 7515 §4 / RFC 7519 §7.2: header and claims are JSON objects. `serde_json`
/// keeps the lexically last duplicate member, which RFC 7519 §4 permits.
pub(crate) fn parse_json_object(json: &[u8]) -> Result<Map<String, Value>, AuthError> {
    match serde_json::from_slice::<Value>(json) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(AuthError::Malformed),
    }
}

fn check_hs256(
    key: &Hmac<Sha256>,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), AuthError> {
    let mut mac = key.clone();
    mac.update(signing_input);
    mac.verify_slice(signature)
        .map_err(|_| AuthError::BadSignature)
}

fn check_rs256(
    key: &RsaVerifyingKey<Sha256>,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), AuthError> {
    let signature = RsaSignature::try_from(signature).map_err(|_| AuthError::BadSignature)?;
    key.verify(signing_input, &signature)
        .map_err(|_| AuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_requires_exactly_three_segments() {
        assert!(split_compact("a.b.c").is_ok());
        for bad in ["", "abc", "a.b", "a.b.c.d", "a.b.c.d.e"] {
            assert!(split_compact(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn split_keeps_signing_input_as_header_dot_payload() {
        let jws = match split_compact("hh.pp.ss") {
            Ok(jws) => jws,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(jws.header_b64, "hh");
        assert_eq!(jws.payload_b64, "pp");
        assert_eq!(jws.signature_b64, "ss");
        assert_eq!(jws.signing_input, "hh.pp");
    }

    #[test]
    fn segments_must_be_unpadded_canonical_base64url() {
        assert_eq!(decode_segment("YQ"), Ok(b"a".to_vec()));
        assert_eq!(decode_segment("YQ=="), Err(AuthError::Malformed));
        // Standard-alphabet '+' and '/' are not base64url.
        assert_eq!(decode_segment("a+/a"), Err(AuthError::Malformed));
        // "YR" decodes to 'a' only if trailing bits are ignored.
        assert_eq!(decode_segment("YR"), Err(AuthError::Malformed));
    }

    #[test]
    fn algorithm_names_are_exact() {
        assert_eq!(algorithm_from_name("HS256"), Ok(JwsAlgorithm::Hs256));
        assert_eq!(algorithm_from_name("RS256"), Ok(JwsAlgorithm::Rs256));
        for other in ["none", "None", "hs256", "HS512", "PS256", "ES256", ""] {
            assert_eq!(
                algorithm_from_name(other),
                Err(AuthError::AlgorithmNotAllowed),
                "{other:?}"
            );
        }
    }

    #[test]
    fn header_needs_string_alg_and_no_crit() {
        assert_eq!(
            header_algorithm(br#"{"alg":"HS256","typ":"JWT"}"#),
            Ok(JwsAlgorithm::Hs256)
        );
        assert_eq!(
            header_algorithm(br#"{"typ":"JWT"}"#),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            header_algorithm(br#"{"alg":256}"#),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            header_algorithm(br#"{"alg":"HS256","crit":["b64"],"b64":false}"#),
            Err(AuthError::Malformed)
        );
        assert_eq!(header_algorithm(br#"["alg"]"#), Err(AuthError::Malformed));
        assert_eq!(header_algorithm(b"not json"), Err(AuthError::Malformed));
    }

    #[test]
    fn duplicate_header_members_keep_the_last() {
        assert_eq!(
            header_algorithm(br#"{"alg":"HS256","alg":"none"}"#),
            Err(AuthError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn short_hs256_secret_is_a_config_error() {
        let short = [7_u8; HS256_SECRET_BYTES_MIN - 1];
        assert!(matches!(
            SignatureKeys::new(Some(&short), None, None),
            Err(AuthConfigError::Hs256SecretTooShort)
        ));
        let exact = [7_u8; HS256_SECRET_BYTES_MIN];
        assert!(matches!(
            SignatureKeys::new(Some(&exact), None, None),
            Ok(Some(_))
        ));
    }

    #[test]
    fn no_keys_means_auth_off() {
        assert!(matches!(SignatureKeys::new(None, None, None), Ok(None)));
    }
}
