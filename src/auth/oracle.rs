//! Differential tests of [`Verifier`] against the `jsonwebtoken` crate (a dev-dependency) as an
//! oracle: the same tokens, verified by both, must be accepted or refused alike.
//!
//! The oracle is `jsonwebtoken` configured to state the relay's policy: only the configured
//! keys (the key picked by the header's `alg`, HS256 or RS256), `exp` and `sub` required, `iss`
//! and `aud` required and checked when configured, a present `aud` refused when none is
//! configured, the same leeway. `jsonwebtoken` reads the system clock itself, so every check
//! passes `Verifier::verify` the current second and is repeated if the second changed while
//! minting and verifying.
//!
//! The two differ on purpose in a few places; [`known_differences`] states each with both
//! answers, and the comparison below allows exactly one of them (the `exp` boundary), which
//! generated tokens do reach. Generated tokens stay inside the rest of the common domain:
//! integer dates, string `iss`, non-empty `sub`, no `crit`, no duplicate members, well under
//! `TOKEN_BYTES_MAX`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, EncodingKey, Header};
use jsonwebtoken::{encode, Validation};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::test_keys::{
    RSA_1024_PUBLIC_SPKI_PEM, RSA_A_PRIVATE_PKCS8_PEM, RSA_A_PUBLIC_PKCS1_PEM,
    RSA_A_PUBLIC_SPKI_PEM, RSA_B_PUBLIC_SPKI_PEM,
};
use super::*;

const SECRET: &[u8] = b"oracle-secret-0123456789abcdef-0123456789";
const OTHER_SECRET: &[u8] = b"another-secret-0123456789abcdef-012345678";
const AUDIENCE: &str = "wsrelay";
const ISSUER: &str = "https://auth.example";

/// How a token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signing {
    /// HS256 with the configured secret.
    Hs256,
    /// HS256 with another secret (wrong key).
    Hs256OtherSecret,
    /// HS256 keyed with the RSA public key's PEM bytes (algorithm confusion).
    Hs256WithRsaPublicKey,
    /// RS256 with private key A.
    Rs256,
    /// HS384: an HMAC algorithm the relay never accepts.
    Hs384,
    /// PS256 with private key A: an RSA algorithm the relay never accepts.
    Ps256,
    /// `alg: none`, empty signature.
    Unsigned,
}

const SIGNINGS: [Signing; 7] = [
    Signing::Hs256,
    Signing::Hs256OtherSecret,
    Signing::Hs256WithRsaPublicKey,
    Signing::Rs256,
    Signing::Hs384,
    Signing::Ps256,
    Signing::Unsigned,
];

/// What is changed after signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    Nothing,
    /// The payload is replaced (`sub` becomes `mallory`, publish anywhere); signature kept.
    Payload,
    /// One bit of the signature is flipped (a byte is added to an empty one).
    Signature,
}

/// Which RSA public key the relay is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RsaKey {
    Off,
    ASpki,
    APkcs1,
    /// The public half of another pair: RS256 tokens from key A do not verify.
    B,
}

impl RsaKey {
    fn pem(self) -> Option<&'static str> {
        match self {
            Self::Off => None,
            Self::ASpki => Some(RSA_A_PUBLIC_SPKI_PEM),
            Self::APkcs1 => Some(RSA_A_PUBLIC_PKCS1_PEM),
            Self::B => Some(RSA_B_PUBLIC_SPKI_PEM),
        }
    }
}

/// The relay's configuration, stated once for both verifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setup {
    hs256: bool,
    rsa: RsaKey,
    audience: bool,
    issuer: bool,
    leeway_s: u64,
}

impl Setup {
    fn config(&self) -> AuthConfig {
        AuthConfig {
            hs256_secret: self.hs256.then(|| SECRET.to_vec()),
            rs256_public_key_pem: self.rsa.pem().map(|pem| pem.as_bytes().to_vec()),
            audience: self.audience.then(|| AUDIENCE.to_owned()),
            issuer: self.issuer.then(|| ISSUER.to_owned()),
            leeway_s: self.leeway_s,
            require_exp: true,
            jwks: None,
        }
    }

    fn verifier(&self) -> Verifier {
        match Verifier::new(&self.config()) {
            Ok(Some(v)) => v,
            other => panic!("{self:?}: expected a verifier, got {other:?}"),
        }
    }

    /// `jsonwebtoken`'s answer under the same policy (it reads the clock itself).
    fn oracle_accepts(&self, token: &str) -> bool {
        let Ok(header) = decode_header(token) else {
            return false;
        };
        let key = match (header.alg, self.rsa.pem()) {
            (Algorithm::HS256, _) if self.hs256 => DecodingKey::from_secret(SECRET),
            (Algorithm::RS256, Some(pem)) => DecodingKey::from_rsa_pem(pem.as_bytes()),
            _ => return false,
        };
        let key = key.unwrap_or_else(|e| panic!("oracle key rejected: {e}"));
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // `validate_aud` stays on: with no audience set, a present `aud` is refused.
        let mut required = vec!["exp", "sub"];
        if self.issuer {
            validation.set_issuer(&[ISSUER]);
            required.push("iss");
        }
        if self.audience {
            validation.set_audience(&[AUDIENCE]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        decode::<Value>(token, &key, &validation).is_ok()
    }
}

/// `aud` as the token carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Aud {
    Absent,
    One(&'static str),
    Many(Vec<&'static str>),
}

/// Claims with dates relative to the second the token is minted and checked in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claims {
    sub: Option<&'static str>,
    exp_in_s: Option<i64>,
    nbf_in_s: Option<i64>,
    iss: Option<&'static str>,
    aud: Aud,
}

impl Claims {
    fn valid() -> Self {
        Self {
            sub: Some("alice"),
            exp_in_s: Some(60),
            nbf_in_s: None,
            iss: None,
            aud: Aud::Absent,
        }
    }

    fn exp_at(&self, now_s: u64) -> Option<u64> {
        self.exp_in_s.map(|d| at(now_s, d))
    }

    fn json(&self, now_s: u64) -> Value {
        let mut claims = Map::new();
        let mut put = |name: &str, value: Value| claims.insert(name.to_owned(), value);
        if let Some(sub) = self.sub {
            put("sub", json!(sub));
        }
        if let Some(exp) = self.exp_at(now_s) {
            put("exp", json!(exp));
        }
        if let Some(d) = self.nbf_in_s {
            put("nbf", json!(at(now_s, d)));
        }
        if let Some(iss) = self.iss {
            put("iss", json!(iss));
        }
        match &self.aud {
            Aud::Absent => None,
            Aud::One(aud) => put("aud", json!(aud)),
            Aud::Many(auds) => put("aud", json!(auds)),
        };
        put(
            "channels",
            json!({"subscribe": ["md.*"], "publish": ["room.42"]}),
        );
        Value::Object(claims)
    }
}

fn at(now_s: u64, delta_s: i64) -> u64 {
    now_s.saturating_add_signed(delta_s)
}

fn unix_now_s() -> u64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs(),
        Err(e) => panic!("clock before 1970: {e}"),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac_key(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret).unwrap_or_else(|e| panic!("HMAC key rejected: {e}"))
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_A_PRIVATE_PKCS8_PEM.as_bytes())
        .unwrap_or_else(|e| panic!("test key rejected: {e}"))
}

fn mint(signing: Signing, claims: &Value) -> String {
    let (alg, key) = match signing {
        Signing::Hs256 => (Algorithm::HS256, hmac_key(SECRET)),
        Signing::Hs256OtherSecret => (Algorithm::HS256, hmac_key(OTHER_SECRET)),
        Signing::Hs256WithRsaPublicKey => {
            (Algorithm::HS256, hmac_key(RSA_A_PUBLIC_SPKI_PEM.as_bytes()))
        }
        Signing::Rs256 => (Algorithm::RS256, rsa_key()),
        Signing::Hs384 => (Algorithm::HS384, hmac_key(SECRET)),
        Signing::Ps256 => (Algorithm::PS256, rsa_key()),
        Signing::Unsigned => {
            let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
            return format!("{header}.{}.", b64(claims.to_string().as_bytes()));
        }
    };
    encode(&Header::new(alg), claims, &key).unwrap_or_else(|e| panic!("minting failed: {e}"))
}

fn tamper(token: &str, how: Tamper, now_s: u64) -> String {
    let mut parts = token.splitn(3, '.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("not a compact JWS: {token}");
    };
    match how {
        Tamper::Nothing => token.to_owned(),
        Tamper::Payload => {
            let forged = json!({"sub": "mallory", "exp": now_s + 60,
                                "channels": {"publish": ["*"]}});
            format!(
                "{header}.{}.{signature}",
                b64(forged.to_string().as_bytes())
            )
        }
        Tamper::Signature => {
            let mut sig = URL_SAFE_NO_PAD
                .decode(signature)
                .unwrap_or_else(|e| panic!("{e}"));
            match sig.first_mut() {
                Some(first) => *first ^= 0x01,
                None => sig.push(0),
            }
            format!("{header}.{payload}.{}", b64(&sig))
        }
    }
}

/// Mints one token per case and checks it under every setup, both ways, within one clock
/// second (repeated from minting when the second changes). Returns how many tokens the relay
/// accepted, so callers can show the cases were not all refusals.
fn compare(cases: &[(Signing, Claims, Tamper)], setups: &[Setup]) -> usize {
    let verifiers: Vec<Verifier> = setups.iter().map(Setup::verifier).collect();
    let mut accepted = 0;
    for (signing, claims, how) in cases {
        loop {
            let now_s = unix_now_s();
            let token = tamper(&mint(*signing, &claims.json(now_s)), *how, now_s);
            let answers: Vec<(Result<Grant, AuthError>, bool)> = setups
                .iter()
                .zip(&verifiers)
                .map(|(setup, v)| (v.verify(&token, now_s), setup.oracle_accepts(&token)))
                .collect();
            if unix_now_s() != now_s {
                continue;
            }
            for (setup, (ours, oracle)) in setups.iter().zip(answers) {
                let what = format!("{signing:?} {how:?} {claims:?} under {setup:?}: {token}");
                assert_agrees(setup, claims, now_s, &ours, oracle, &what);
                accepted += usize::from(ours.is_ok());
            }
            break;
        }
    }
    accepted
}

/// The relay accepts exactly when the oracle does, except at `now == exp + leeway`, where the
/// relay refuses (RFC 7519 §4.1.4: now MUST be before `exp`) and `jsonwebtoken` accepts.
fn assert_agrees(
    setup: &Setup,
    claims: &Claims,
    now_s: u64,
    ours: &Result<Grant, AuthError>,
    oracle: bool,
    what: &str,
) {
    let exp = claims.exp_at(now_s);
    let at_exp_boundary = exp.is_some_and(|exp| exp.saturating_add(setup.leeway_s) == now_s);
    match ours {
        Ok(grant) => {
            assert!(oracle, "relay accepted, oracle refused: {what}");
            assert_eq!(Some(grant.sub.as_str()), claims.sub, "{what}");
            assert_eq!(grant.expires_at_unix_s, exp, "{what}");
        }
        Err(AuthError::Expired) if oracle && at_exp_boundary => {}
        Err(e) => assert!(!oracle, "relay refused ({e:?}), oracle accepted: {what}"),
    }
}

/// Every claim fault the relay checks, one at a time, around the leeways used below (0, 30).
fn claim_variants() -> Vec<Claims> {
    let valid = Claims::valid();
    let with = |f: &dyn Fn(&mut Claims)| {
        let mut c = valid.clone();
        f(&mut c);
        c
    };
    let mut variants = vec![valid.clone()];
    for exp in [0, -1, -29, -30, -31, 1] {
        variants.push(with(&|c| c.exp_in_s = Some(exp)));
    }
    for nbf in [-1, 0, 1, 30, 31] {
        variants.push(with(&|c| c.nbf_in_s = Some(nbf)));
    }
    variants.push(with(&|c| c.exp_in_s = None));
    variants.push(with(&|c| c.sub = None));
    variants.push(with(&|c| c.iss = Some(ISSUER)));
    variants.push(with(&|c| c.iss = Some("https://evil.example")));
    variants.push(with(&|c| c.aud = Aud::One(AUDIENCE)));
    variants.push(with(&|c| c.aud = Aud::One("other")));
    variants.push(with(&|c| c.aud = Aud::Many(vec!["other", AUDIENCE])));
    variants.push(with(&|c| c.aud = Aud::Many(vec![])));
    variants.push(with(&|c| {
        c.iss = Some(ISSUER);
        c.aud = Aud::One(AUDIENCE);
    }));
    variants
}

/// Keys (HS256 only, RS256 only in both PEM forms, both, RS256 with the wrong public key) ×
/// audience × issuer × leeway.
fn all_setups() -> Vec<Setup> {
    let keys = [
        (true, RsaKey::Off),
        (false, RsaKey::ASpki),
        (true, RsaKey::APkcs1),
        (true, RsaKey::B),
    ];
    let mut setups = Vec::new();
    for (hs256, rsa) in keys {
        for audience in [false, true] {
            for issuer in [false, true] {
                for leeway_s in [0, 30] {
                    setups.push(Setup {
                        hs256,
                        rsa,
                        audience,
                        issuer,
                        leeway_s,
                    });
                }
            }
        }
    }
    setups
}

#[test]
fn every_signing_and_claim_fault_agrees_with_the_oracle() {
    let mut cases = Vec::new();
    for signing in SIGNINGS {
        for claims in claim_variants() {
            cases.push((signing, claims, Tamper::Nothing));
        }
        for how in [Tamper::Payload, Tamper::Signature] {
            cases.push((signing, Claims::valid(), how));
        }
    }
    let setups = all_setups();
    let accepted = compare(&cases, &setups);
    // 21 claim variants + 2 tampered tokens per signing, under 32 setups: 5,152 checks. The
    // accepted ones are valid HS256/RS256 tokens under matching keys and claim settings, so the
    // agreement is not only on refusals (the count is independent of the clock).
    assert_eq!(cases.len() * setups.len(), 5_152);
    assert_eq!(accepted, 135);
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    let rsa = prop_oneof![
        Just(RsaKey::Off),
        Just(RsaKey::ASpki),
        Just(RsaKey::APkcs1),
        Just(RsaKey::B)
    ];
    let leeway = prop_oneof![Just(0), Just(LEEWAY_S_MAX), 0..=LEEWAY_S_MAX];
    (any::<bool>(), rsa, any::<bool>(), any::<bool>(), leeway)
        .prop_filter("auth on", |(hs256, rsa, ..)| *hs256 || *rsa != RsaKey::Off)
        .prop_map(|(hs256, rsa, audience, issuer, leeway_s)| Setup {
            hs256,
            rsa,
            audience,
            issuer,
            leeway_s,
        })
}

/// Date offsets near now, near both leeway boundaries (`now ± leeway`) and anywhere within
/// `LEEWAY_S_MAX` and a little more.
fn offset_strategy(leeway_s: u64) -> impl Strategy<Value = i64> {
    let leeway = i64::try_from(leeway_s).unwrap_or(i64::MAX);
    prop_oneof![
        -2_i64..=2,
        (-2_i64..=2).prop_map(move |d| d - leeway),
        (-2_i64..=2).prop_map(move |d| d + leeway),
        -310_i64..=310,
    ]
}

/// Claims that pass under `setup` in most cases, with each field sometimes faulty, so that
/// the deciding check varies from case to case.
fn claims_strategy(setup: Setup) -> impl Strategy<Value = Claims> {
    let names = prop_oneof![Just(AUDIENCE), Just("other"), Just(ISSUER)];
    let any_aud = prop_oneof![
        Just(Aud::Absent),
        names.clone().prop_map(Aud::One),
        proptest::collection::vec(names, 0..3).prop_map(Aud::Many),
    ];
    let fitting_aud = if setup.audience {
        prop_oneof![
            Just(Aud::One(AUDIENCE)),
            Just(Aud::Many(vec!["other", AUDIENCE]))
        ]
        .boxed()
    } else {
        Just(Aud::Absent).boxed()
    };
    let aud = prop_oneof![4 => fitting_aud, 1 => any_aud];
    let iss = prop_oneof![
        4 => Just(setup.issuer.then_some(ISSUER)),
        1 => proptest::option::of(prop_oneof![Just(ISSUER), Just("https://evil.example")]),
    ];
    let sub = proptest::option::weighted(0.95, prop_oneof![Just("alice"), Just("b")]);
    let exp = proptest::option::weighted(0.95, offset_strategy(setup.leeway_s));
    let nbf = proptest::option::of(offset_strategy(setup.leeway_s));
    (sub, exp, nbf, iss, aud).prop_map(|(sub, exp_in_s, nbf_in_s, iss, aud)| Claims {
        sub,
        exp_in_s,
        nbf_in_s,
        iss,
        aud,
    })
}

fn signing_strategy() -> impl Strategy<Value = Signing> {
    // Valid signatures dominate, so most cases reach the claim checks.
    prop_oneof![
        4 => Just(Signing::Hs256),
        4 => Just(Signing::Rs256),
        1 => proptest::sample::select(SIGNINGS.to_vec()),
    ]
}

fn tamper_strategy() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        8 => Just(Tamper::Nothing),
        1 => Just(Tamper::Payload),
        1 => Just(Tamper::Signature),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_tokens_agree_with_the_oracle(
        (setup, claims) in setup_strategy()
            .prop_flat_map(|setup| (Just(setup), claims_strategy(setup))),
        signing in signing_strategy(),
        how in tamper_strategy(),
    ) {
        compare(&[(signing, claims, how)], &[setup]);
    }
}

/// HS256 with an issuer, no audience, no leeway: the setup of the known differences.
fn hs256_with_issuer() -> Setup {
    Setup {
        hs256: true,
        rsa: RsaKey::Off,
        audience: false,
        issuer: true,
        leeway_s: 0,
    }
}

/// Where the relay deliberately answers differently from `jsonwebtoken` about a token's
/// claims, size and header, with both answers.
#[test]
fn known_differences() {
    let hs = hs256_with_issuer();
    let v = hs.verifier();
    loop {
        let now_s = unix_now_s();
        let claims = |extra: Value| {
            let mut c = json!({"sub": "alice", "exp": now_s + 60, "iss": ISSUER});
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            c
        };
        let check = |token: &str| (v.verify(token, now_s), hs.oracle_accepts(token));

        // RFC 7519 §4.1.4: now must be before `exp`; jsonwebtoken accepts at `exp`.
        let at_exp = check(&mint(Signing::Hs256, &claims(json!({"exp": now_s}))));
        // Fractional dates round toward refusal (`exp` down); jsonwebtoken rounds to nearest.
        let exp_frac = claims(json!({"exp": now_s as f64 + 0.6}));
        let fractional = check(&mint(Signing::Hs256, &exp_frac));
        // Size is checked before any base64, JSON or signature work; jsonwebtoken has no bound.
        let padding = "p".repeat(TOKEN_BYTES_MAX);
        let oversize = check(&mint(Signing::Hs256, &claims(json!({"pad": padding}))));
        // `iss` is one string (RFC 7519 §4.1.1); jsonwebtoken also takes a list containing it.
        let iss_list = check(&mint(Signing::Hs256, &claims(json!({"iss": [ISSUER]}))));
        // An empty `sub` is no subject (it becomes `from`); jsonwebtoken takes it as present.
        let empty_sub = check(&mint(Signing::Hs256, &claims(json!({"sub": ""}))));
        // Duplicate header members: the last one wins (RFC 7519 §4, as for claims);
        // jsonwebtoken refuses the header. The signature still has to verify.
        let header = b64(br#"{"alg":"none","alg":"HS256"}"#);
        let payload = b64(claims(json!({})).to_string().as_bytes());
        let signing_input = format!("{header}.{payload}");
        let tag = hmac_sha256(SECRET, signing_input.as_bytes());
        let duplicate_alg = check(&format!("{signing_input}.{}", b64(&tag)));
        if unix_now_s() != now_s {
            continue;
        }
        assert_eq!((at_exp.0, at_exp.1), (Err(AuthError::Expired), true));
        assert_eq!(
            (fractional.0, fractional.1),
            (Err(AuthError::Expired), true)
        );
        assert_eq!((oversize.0, oversize.1), (Err(AuthError::Malformed), true));
        assert_eq!((iss_list.0, iss_list.1), (Err(AuthError::BadClaims), true));
        assert_eq!(
            (empty_sub.0, empty_sub.1),
            (Err(AuthError::MissingSubject), true)
        );
        assert_eq!(
            (duplicate_alg.0.map(|g| g.sub), duplicate_alg.1),
            (Ok("alice".to_owned()), false)
        );
        break;
    }
}

/// `alg: none` is refused as `algorithm_not_allowed` (its own metric label); to jsonwebtoken
/// it is a header that does not parse, the same error as any bad JSON.
#[test]
fn known_difference_alg_none() {
    let v = hs256_with_issuer().verifier();
    let unsigned = mint(Signing::Unsigned, &json!({"sub": "alice"}));
    assert_eq!(v.verify(&unsigned, 0), Err(AuthError::AlgorithmNotAllowed));
    let kind = decode_header(&unsigned).map_err(|e| e.into_kind());
    assert!(
        matches!(kind, Err(jsonwebtoken::errors::ErrorKind::Json(_))),
        "{kind:?}"
    );
}

/// Key minimums (RFC 7518 §3.2, §3.3) are configuration errors; jsonwebtoken takes any
/// non-empty secret and any RSA modulus.
#[test]
fn known_difference_key_minimums() {
    let short_secret = AuthConfig {
        hs256_secret: Some(vec![7; HS256_SECRET_BYTES_MIN - 1]),
        ..AuthConfig::default()
    };
    assert!(matches!(
        Verifier::new(&short_secret),
        Err(AuthConfigError::Hs256SecretTooShort)
    ));
    assert!(DecodingKey::from_secret(&[7; HS256_SECRET_BYTES_MIN - 1]).is_ok());
    let small_rsa = AuthConfig {
        rs256_public_key_pem: Some(RSA_1024_PUBLIC_SPKI_PEM.as_bytes().to_vec()),
        ..AuthConfig::default()
    };
    assert!(matches!(
        Verifier::new(&small_rsa),
        Err(AuthConfigError::RsaKeyTooSmall)
    ));
    assert!(DecodingKey::from_rsa_pem(RSA_1024_PUBLIC_SPKI_PEM.as_bytes()).is_ok());
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(e) => panic!("{e}"),
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}
