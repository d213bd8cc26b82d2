//! Connection authentication: JWT verification and channel permissions.
//!
//! Owns: turning the token string a connection presents into a [`Grant`] (who
//! it is, which channels it may subscribe and publish to), or an [`AuthError`].
//! May not touch: sockets, the clock, logging, token extraction (the runtime
//! pulls the string from the first `{"type":"auth","token":...}` message, the
//! `token` query parameter or the cookie; this module only verifies it).
//! Sans-IO: callers pass `now_unix_s`; nothing here reads time or does I/O.
//! A [`Verifier`] is built once at startup and shared read-only (it is `Send +
//! Sync`; wrap it in an `Arc`).
//!
//! # Accepted tokens
//!
//! JWS compact serialization (RFC 7515 §7.1), at most [`TOKEN_BYTES_MAX`]
//! bytes, signed with `HS256` (only when a secret is configured) or `RS256`
//! (only when an RSA public key is configured). Every other `alg`, `none`
//! included, is refused before any signature work. A header with `crit` is
//! refused (no extensions are understood). Keys must meet RFC 7518's minimums:
//! HS256 secret >= 32 bytes, RSA modulus >= 2048 bits (else [`AuthConfigError`]).
//!
//! # Claims format
//!
//! ```json
//! {
//!   "sub": "alice",                 // required, non-empty string, <= 256 bytes; becomes `from`
//!   "exp": 1767225600,              // required (see below), NumericDate seconds
//!   "nbf": 1767222000,              // optional, NumericDate seconds
//!   "iss": "https://auth.example",  // checked only when an issuer is configured
//!   "aud": "wsrelay",               // string or array of strings; see below
//!   "channels": {
//!     "subscribe": ["md.*", "room.42"],  // optional, <= 64 patterns
//!     "publish":   ["room.42"]           // optional, <= 64 patterns
//!   }
//! }
//! ```
//!
//! - `exp` is required by default ([`AuthConfig::require_exp`]): a token with
//!   no expiry is valid forever once leaked. Rejected when
//!   `now >= exp + leeway_s` (RFC 7519 §4.1.4).
//! - `nbf` rejects when `now + leeway_s < nbf` (RFC 7519 §4.1.5).
//! - Fractional `NumericDate`s round toward rejection (`exp` down, `nbf` up).
//! - `iss`: when [`AuthConfig::issuer`] is set, must be present and equal
//!   (case-sensitive). Otherwise ignored.
//! - `aud`: when [`AuthConfig::audience`] is set, must be present and contain it.
//!   When not set, a token that carries `aud` at all is refused, because RFC 7519
//!   §4.1.3 says a recipient not named in a present `aud` MUST reject.
//! - `channels`: a missing claim, or a missing `subscribe`/`publish` list,
//!   grants NOTHING for that action (deny by default). Pattern syntax (see
//!   [`ChannelPattern`]): `room.42` exact; `md.*` any channel starting with
//!   `md.` plus at least one byte (multi-segment); `*` alone matches all.
//!   A wrong type, an invalid pattern, or more than [`PATTERNS_PER_LIST_MAX`]
//!   entries in a list rejects the whole token as `bad_claims`.
//! - `iat`, `jti` and unknown claims are ignored. Duplicate JSON members: the
//!   last one wins (RFC 7519 §4).
//!
//! # Check order
//!
//! size → segments/base64/header JSON (`malformed`) → `alg`
//! (`algorithm_not_allowed`) → signature (`bad_signature`) → claims JSON
//! (`malformed`) → `exp` → `nbf` → `iss` → `aud` → `sub` → `channels`.
//! Claims are never parsed before the signature verifies.
//!
//! # Testing
//!
//! `tests.rs` mints tokens with the `jsonwebtoken` crate (an independent implementation);
//! `oracle.rs` verifies the same tokens with both and asserts they agree, and states where
//! they differ on purpose (ARCHITECTURE.md, "Decisions and measurements", says why the relay
//! keeps its own verifier).

mod claims;
mod jwks;
#[cfg(test)]
mod jwks_tests;
mod jwt;
mod pattern;

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod test_keys;
#[cfg(test)]
mod tests;

use std::fmt;

pub use jwt::{HS256_SECRET_BYTES_MIN, RS256_MODULUS_BITS_MIN};
pub use pattern::{ChannelPattern, PatternError, Permissions, CHANNEL_PATTERN_BYTES_MAX};

use claims::ClaimsPolicy;
use jwt::SignatureKeys;

/// Longest token accepted, in bytes. Policy: refuse before any base64, JSON or
/// crypto work; 8 KiB fits an RS256 token with two full 64-pattern lists.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;

/// Most patterns accepted in one `subscribe` or `publish` list. Policy: keeps
/// [`Permissions::allows`] a short linear scan on every subscribe/publish.
pub const PATTERNS_PER_LIST_MAX: usize = 64;

/// Longest `sub` accepted, in bytes. Policy: `sub` is copied into the `from`
/// field of every delivery the connection publishes, so it stays small.
pub const SUBJECT_BYTES_MAX: usize = 256;

/// Default clock-skew allowance: none. Deployments whose token issuer runs on
/// another host should set a few seconds to a minute.
pub const LEEWAY_S_DEFAULT: u64 = 0;

/// Largest leeway accepted. Policy: beyond 5 minutes "skew" is really a
/// longer token lifetime and belongs in `exp`, not in the relay's config.
pub const LEEWAY_S_MAX: u64 = 300;

/// Authentication settings; auth is on when at least one key is set.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Shared secret enabling HS256; at least [`HS256_SECRET_BYTES_MIN`] bytes.
    pub hs256_secret: Option<Vec<u8>>,
    /// PEM text of an RSA public key enabling RS256: SPKI (`BEGIN PUBLIC KEY`)
    /// or PKCS#1 (`BEGIN RSA PUBLIC KEY`), modulus >= 2048 bits.
    pub rs256_public_key_pem: Option<Vec<u8>>,
    /// Required `aud` value; `None` refuses tokens that carry any `aud`.
    pub audience: Option<String>,
    /// Required `iss` value; `None` skips the issuer check.
    pub issuer: Option<String>,
    /// Clock-skew allowance applied to `exp` and `nbf`, in seconds;
    /// default [`LEEWAY_S_DEFAULT`], at most [`LEEWAY_S_MAX`].
    pub leeway_s: u64,
    /// Refuse tokens without `exp` (`bad_claims`); default `true`.
    pub require_exp: bool,
    /// A JWK Set document (RFC 7517 §5) whose HS256 and RS256 keys are used next to the two
    /// above, chosen by the token's `kid`.
    pub jwks: Option<Vec<u8>>,
}

impl Default for AuthConfig {
    /// Auth off (no keys), no audience/issuer, no leeway, `exp` required.
    fn default() -> Self {
        Self {
            hs256_secret: None,
            rs256_public_key_pem: None,
            audience: None,
            issuer: None,
            leeway_s: LEEWAY_S_DEFAULT,
            require_exp: true,
            jwks: None,
        }
    }
}

impl fmt::Debug for AuthConfig {
    /// Redacts the secret so configs can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("rs256_public_key_pem", &self.rs256_public_key_pem.is_some())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway_s", &self.leeway_s)
            .field("require_exp", &self.require_exp)
            .field("jwks", &self.jwks.is_some())
            .finish()
    }
}

/// Why an [`AuthConfig`] cannot become a [`Verifier`]; one variant per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// The HS256 secret is shorter than [`HS256_SECRET_BYTES_MIN`] (RFC 7518 §3.2).
    #[error("HS256 secret must be at least 32 bytes (RFC 7518 section 3.2)")]
    Hs256SecretTooShort,
    /// The PEM is neither an SPKI nor a PKCS#1 RSA public key.
    #[error("RS256 public key is not a PEM-encoded RSA public key (SPKI or PKCS#1)")]
    InvalidRsaPublicKey,
    /// The RSA modulus is below [`RS256_MODULUS_BITS_MIN`] (RFC 7518 §3.3).
    #[error("RS256 public key must be at least 2048 bits (RFC 7518 section 3.3)")]
    RsaKeyTooSmall,
    /// `leeway_s` exceeds [`LEEWAY_S_MAX`].
    #[error("auth leeway must be at most 300 seconds")]
    LeewayTooLarge,
    /// The JWK Set is not a JSON object with a `keys` array of valid JWKs (RFC 7517 §5), or
    /// exceeds its bounds (1 MiB, 64 usable keys, 256-byte `kid`s).
    #[error("JWK Set is malformed (RFC 7517 section 5: an object with a \"keys\" array)")]
    JwksMalformed,
    /// Two usable keys of the JWK Set have the same `kid`.
    #[error("JWK Set has two keys with the same kid")]
    JwksDuplicateKid,
    /// The JWK Set holds no HS256 (`oct`) or RS256 (`RSA`) signing key.
    #[error("JWK Set has no HS256 or RS256 signing key")]
    JwksNoUsableKey,
}

/// Why a token was refused; one variant per rule. [`AuthError::kind`] is a
/// stable label for metrics and error frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub enum AuthError {
    /// Not a compact JWS: too long, wrong segment count, bad base64url,
    /// header/claims not a JSON object, missing `alg`, or `crit` present.
    Malformed,
    /// The signature does not verify under the configured key.
    BadSignature,
    /// `alg` is not HS256/RS256, or names an algorithm with no configured key.
    AlgorithmNotAllowed,
    /// `now >= exp + leeway`.
    Expired,
    /// `now + leeway < nbf`.
    NotYetValid,
    /// `aud` does not name the configured audience (or is present when none is).
    WrongAudience,
    /// `iss` differs from the configured issuer.
    WrongIssuer,
    /// `sub` is absent or empty.
    MissingSubject,
    /// A claim has the wrong type or value: missing `exp` (when required),
    /// oversize `sub`, invalid pattern, too many patterns, etc.
    BadClaims,
    /// No configured key is named by the token's `kid`, or several keys could check a token
    /// that names none.
    UnknownKey,
}

impl AuthError {
    /// Stable `snake_case` label, e.g. for a metrics counter or an error frame.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::MissingSubject => "missing_subject",
            Self::BadClaims => "bad_claims",
            Self::UnknownKey => "unknown_key",
        }
    }

    /// Human-readable reason, safe to send to the client (reveals no key data).
    #[must_use]
    pub fn message(&self) -> &'static str {
        match self {
            Self::Malformed => "token is not a well-formed JWT",
            Self::BadSignature => "token signature is invalid",
            Self::AlgorithmNotAllowed => "token signing algorithm is not allowed",
            Self::Expired => "token has expired",
            Self::NotYetValid => "token is not valid yet",
            Self::WrongAudience => "token audience does not match",
            Self::WrongIssuer => "token issuer does not match",
            Self::MissingSubject => "token has no subject",
            Self::BadClaims => "token claims are invalid",
            Self::UnknownKey => "token key id (kid) names no configured key",
        }
    }
}

/// What an authenticated connection is: its identity and its channel rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's `sub`; the relay puts it in `from` of deliveries. Arbitrary
    /// UTF-8 (quotes, control characters): JSON-escape it when encoding.
    pub sub: String,
    /// Channels the connection may subscribe to.
    pub subscribe: Permissions,
    /// Channels the connection may publish to.
    pub publish: Permissions,
    /// The token's `exp`, in whole seconds (fraction rounded down), without
    /// leeway; `None` only when `require_exp` is off and the token has none.
    pub expires_at_unix_s: Option<u64>,
}

/// Verifies tokens against the configured keys and claim rules. Built once,
/// shared read-only; holds no per-connection state.
pub struct Verifier {
    keys: SignatureKeys,
    policy: ClaimsPolicy,
}

impl Verifier {
    /// Builds a verifier; `Ok(None)` when no key is configured (auth off, and
    /// `audience`/`issuer` are then irrelevant).
    ///
    /// # Errors
    ///
    /// [`AuthConfigError`] for a short secret, an unparseable or too-small RSA
    /// key, or a leeway above [`LEEWAY_S_MAX`].
    pub fn new(cfg: &AuthConfig) -> Result<Option<Verifier>, AuthConfigError> {
        if cfg.leeway_s > LEEWAY_S_MAX {
            return Err(AuthConfigError::LeewayTooLarge);
        }
        let keys = SignatureKeys::new(
            cfg.hs256_secret.as_deref(),
            cfg.rs256_public_key_pem.as_deref(),
            cfg.jwks.as_deref(),
        )?;
        let policy = ClaimsPolicy {
            audience: cfg.audience.clone(),
            issuer: cfg.issuer.clone(),
            leeway_s: cfg.leeway_s,
            require_exp: cfg.require_exp,
        };
        Ok(keys.map(|keys| Verifier { keys, policy }))
    }

    /// Verifies `token` at `now_unix_s` (seconds since the Unix epoch, from
    /// the caller's clock). See the module header for the check order.
    ///
    /// # Errors
    ///
    /// The first failed rule, as one [`AuthError`] variant.
    pub fn verify(&self, token: &str, now_unix_s: u64) -> Result<Grant, AuthError> {
        let claims_json = self.keys.verified_payload(token)?;
        self.policy.grant(&claims_json, now_unix_s)
    }

    /// The configured clock-skew allowance, e.g. to schedule a disconnect at
    /// `expires_at_unix_s + leeway_s()` consistently with `verify`.
    #[must_use]
    pub fn leeway_s(&self) -> u64 {
        self.policy.leeway_s
    }
}

impl fmt::Debug for Verifier {
    /// Shows which algorithms are enabled, never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.keys.hs256_enabled())
            .field("rs256", &self.keys.rs256_enabled())
            .field("policy", &self.policy)
            .finish()
    }
}
