//! JWT claims validation (RFC 7519 §4.1) and the relay's `channels` claim.
//!
//! Owns: turning a *signature-verified* claims object into a [`Grant`], applying
//! the time rules against a caller-supplied `now_unix_s`, the audience/issuer
//! checks, and the deny-by-default channel permission decoding.
//! May not touch: the clock, signatures (already checked by `jwt.rs`), any I/O.
//!
//! Check order (so each rejection has exactly one label): `exp`, `nbf`, `iss`,
//! `aud`, `sub`, `channels`. A claim with the wrong JSON type is `BadClaims`.

use serde_json::{Map, Value};

use crate::auth::jwt::parse_json_object;
use crate::auth::pattern::{ChannelPattern, Permissions};
use crate::auth::{AuthError, Grant, PATTERNS_PER_LIST_MAX, SUBJECT_BYTES_MAX};

/// Which way a fractional `NumericDate` is rounded to whole seconds: always
/// toward the stricter answer, because `now_unix_s` is itself truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rounding {
    /// For `exp`: 1000.5 counts as 1000 (expires no later than stated).
    Down,
    /// For `nbf`: 1000.5 counts as 1001 (valid no earlier than stated).
    Up,
}

/// The claim checks a verifier was configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimsPolicy {
    pub(crate) audience: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) leeway_s: u64,
    pub(crate) require_exp: bool,
}

impl ClaimsPolicy {
    /// Validates the claims JSON (already signature-checked) into a grant.
    pub(crate) fn grant(&self, claims_json: &[u8], now_unix_s: u64) -> Result<Grant, AuthError> {
        let claims = parse_json_object(claims_json)?;
        let expires_at_unix_s = self.check_times(&claims, now_unix_s)?;
        self.check_issuer(&claims)?;
        self.check_audience(&claims)?;
        let sub = subject(&claims)?;
        let (subscribe, publish) = channel_permissions(&claims)?;
        Ok(Grant {
            sub,
            subscribe,
            publish,
            expires_at_unix_s,
        })
    }

    /// RFC 7519 §4.1.4: now MUST be before `exp`; §4.1.5: now MUST be at or
    /// after `nbf`. Both bend by `leeway_s` (RFC 7519 allows "some small
    /// leeway ... to account for clock skew"). Returns the expiry.
    fn check_times(
        &self,
        claims: &Map<String, Value>,
        now_unix_s: u64,
    ) -> Result<Option<u64>, AuthError> {
        let exp = numeric_date(claims, "exp", Rounding::Down)?;
        if exp.is_none() && self.require_exp {
            return Err(AuthError::BadClaims);
        }
        if exp.is_some_and(|exp| now_unix_s >= exp.saturating_add(self.leeway_s)) {
            return Err(AuthError::Expired);
        }
        let nbf = numeric_date(claims, "nbf", Rounding::Up)?;
        if nbf.is_some_and(|nbf| now_unix_s.saturating_add(self.leeway_s) < nbf) {
            return Err(AuthError::NotYetValid);
        }
        Ok(exp)
    }

    /// RFC 7519 §4.1.1: `iss` is a case-sensitive string; checked only when an
    /// issuer is configured, and then it must be present and equal.
    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let Some(expected) = &self.issuer else {
            return Ok(());
        };
        match claims.get("iss") {
            Some(Value::String(iss)) if iss == expected => Ok(()),
            Some(Value::String(_)) | None => Err(AuthError::WrongIssuer),
            Some(_) => Err(AuthError::BadClaims),
        }
    }

    /// RFC 7519 §4.1.3: `aud` is a string or an array of strings; "If the
    /// principal processing the claim does not identify itself with a value in
    /// the aud claim when this claim is present, then the JWT MUST be
    /// rejected." So a token carrying `aud` is refused when no audience is
    /// configured, and a configured audience makes `aud` mandatory.
    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let audiences = match claims.get("aud") {
            None => Vec::new(),
            Some(aud) => string_or_strings(aud)?,
        };
        let claim_present = claims.contains_key("aud");
        let accepted = match &self.audience {
            Some(expected) => audiences.iter().any(|aud| aud == expected),
            None => !claim_present,
        };
        if accepted {
            Ok(())
        } else {
            Err(AuthError::WrongAudience)
        }
    }
}

/// A `NumericDate` (RFC 7519 §2): non-negative seconds since the epoch, possibly
/// fractional. Absent → `None`; negative, non-number → `BadClaims`. Values past
/// `u64::MAX` saturate (`as` on f64 saturates), which only makes `exp` later.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    rounding: Rounding,
) -> Result<Option<u64>, AuthError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(AuthError::BadClaims);
    };
    if let Some(whole_s) = number.as_u64() {
        return Ok(Some(whole_s));
    }
    match number.as_f64() {
        Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(Some(round_secs(secs, rounding))),
        _ => Err(AuthError::BadClaims),
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn round_secs(secs: f64, rounding: Rounding) -> u64 {
    // Non-negative and finite (checked by the caller); `as` saturates above u64::MAX.
    match rounding {
        Rounding::Down => secs.floor() as u64,
        Rounding::Up => secs.ceil() as u64,
    }
}

/// `aud` as a list: a lone string is a one-element list (RFC 7519 §4.1.3).
fn string_or_strings(value: &Value) -> Result<Vec<&str>, AuthError> {
    match value {
        Value::String(one) => Ok(vec![one.as_str()]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().ok_or(AuthError::BadClaims))
            .collect(),
        _ => Err(AuthError::BadClaims),
    }
}

/// RFC 7519 §4.1.2: `sub` is a string. The relay requires it because it is the
/// `from` of every delivery; empty counts as missing, oversize is `BadClaims`.
fn subject(claims: &Map<String, Value>) -> Result<String, AuthError> {
    match claims.get("sub") {
        None => Err(AuthError::MissingSubject),
        Some(Value::String(sub)) if sub.is_empty() => Err(AuthError::MissingSubject),
        Some(Value::String(sub)) if sub.len() > SUBJECT_BYTES_MAX => Err(AuthError::BadClaims),
        Some(Value::String(sub)) => Ok(sub.clone()),
        Some(_) => Err(AuthError::BadClaims),
    }
}

/// `"channels": {"subscribe": [...], "publish": [...]}`; a missing claim or a
/// missing list is `Permissions::none()` (deny by default).
fn channel_permissions(
    claims: &Map<String, Value>,
) -> Result<(Permissions, Permissions), AuthError> {
    let channels = match claims.get("channels") {
        None => return Ok((Permissions::none(), Permissions::none())),
        Some(Value::Object(channels)) => channels,
        Some(_) => return Err(AuthError::BadClaims),
    };
    let subscribe = pattern_list(channels.get("subscribe"))?;
    let publish = pattern_list(channels.get("publish"))?;
    Ok((subscribe, publish))
}

/// One permission list: an array of at most `PATTERNS_PER_LIST_MAX` valid
/// pattern strings. Any invalid entry rejects the whole token rather than
/// silently granting less than the issuer intended.
fn pattern_list(list: Option<&Value>) -> Result<Permissions, AuthError> {
    let items = match list {
        None => return Ok(Permissions::none()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(AuthError::BadClaims),
    };
    if items.len() > PATTERNS_PER_LIST_MAX {
        return Err(AuthError::BadClaims);
    }
    let patterns = items
        .iter()
        .map(|item| {
            let text = item.as_str().ok_or(AuthError::BadClaims)?;
            ChannelPattern::parse(text).map_err(|_| AuthError::BadClaims)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Permissions::from_patterns(patterns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_S: u64 = 1_700_000_000;

    fn policy() -> ClaimsPolicy {
        ClaimsPolicy {
            audience: None,
            issuer: None,
            leeway_s: 0,
            require_exp: true,
        }
    }

    fn grant(policy: &ClaimsPolicy, claims: &str) -> Result<Grant, AuthError> {
        policy.grant(claims.as_bytes(), NOW_S)
    }

    #[test]
    fn minimal_claims_grant_nothing_but_identity() {
        let g = grant(&policy(), r#"{"sub":"alice","exp":1700000001}"#);
        assert_eq!(
            g,
            Ok(Grant {
                sub: "alice".to_owned(),
                subscribe: Permissions::none(),
                publish: Permissions::none(),
                expires_at_unix_s: Some(1_700_000_001),
            })
        );
    }

    #[test]
    fn exp_boundary_is_exclusive() {
        let at = grant(&policy(), r#"{"sub":"a","exp":1700000000}"#);
        assert_eq!(at, Err(AuthError::Expired));
        let after = grant(&policy(), r#"{"sub":"a","exp":1700000001}"#);
        assert!(after.is_ok());
    }

    #[test]
    fn nbf_boundary_is_inclusive() {
        let at = grant(
            &policy(),
            r#"{"sub":"a","exp":1800000000,"nbf":1700000000}"#,
        );
        assert!(at.is_ok());
        let later = grant(
            &policy(),
            r#"{"sub":"a","exp":1800000000,"nbf":1700000001}"#,
        );
        assert_eq!(later, Err(AuthError::NotYetValid));
    }

    #[test]
    fn fractional_dates_round_toward_rejection() {
        let exp = grant(&policy(), r#"{"sub":"a","exp":1700000000.9}"#);
        assert_eq!(exp, Err(AuthError::Expired));
        let nbf = grant(
            &policy(),
            r#"{"sub":"a","exp":1800000000,"nbf":1699999999.1}"#,
        );
        assert!(nbf.is_ok());
        let nbf = grant(
            &policy(),
            r#"{"sub":"a","exp":1800000000,"nbf":1700000000.1}"#,
        );
        assert_eq!(nbf, Err(AuthError::NotYetValid));
    }

    #[test]
    fn missing_exp_depends_on_policy() {
        let claims = r#"{"sub":"a"}"#;
        assert_eq!(grant(&policy(), claims), Err(AuthError::BadClaims));
        let lenient = ClaimsPolicy {
            require_exp: false,
            ..policy()
        };
        assert_eq!(
            grant(&lenient, claims).map(|g| g.expires_at_unix_s),
            Ok(None)
        );
    }

    #[test]
    fn bad_numeric_dates_are_bad_claims() {
        for claims in [
            r#"{"sub":"a","exp":"1800000000"}"#,
            r#"{"sub":"a","exp":-1}"#,
            r#"{"sub":"a","exp":null}"#,
            r#"{"sub":"a","exp":1800000000,"nbf":true}"#,
        ] {
            assert_eq!(
                grant(&policy(), claims),
                Err(AuthError::BadClaims),
                "{claims}"
            );
        }
    }

    #[test]
    fn huge_exp_saturates_instead_of_failing() {
        let g = grant(&policy(), r#"{"sub":"a","exp":1e300}"#);
        assert_eq!(g.map(|g| g.expires_at_unix_s), Ok(Some(u64::MAX)));
    }

    #[test]
    fn audience_rules() {
        let want = ClaimsPolicy {
            audience: Some("relay".to_owned()),
            ..policy()
        };
        let ok_one = r#"{"sub":"a","exp":1800000000,"aud":"relay"}"#;
        let ok_many = r#"{"sub":"a","exp":1800000000,"aud":["x","relay"]}"#;
        let wrong = r#"{"sub":"a","exp":1800000000,"aud":["x"]}"#;
        let absent = r#"{"sub":"a","exp":1800000000}"#;
        let bad_type = r#"{"sub":"a","exp":1800000000,"aud":[1]}"#;
        assert!(grant(&want, ok_one).is_ok());
        assert!(grant(&want, ok_many).is_ok());
        assert_eq!(grant(&want, wrong), Err(AuthError::WrongAudience));
        assert_eq!(grant(&want, absent), Err(AuthError::WrongAudience));
        assert_eq!(grant(&want, bad_type), Err(AuthError::BadClaims));
        // Unconfigured audience: a token that names one is not for us.
        assert_eq!(grant(&policy(), ok_one), Err(AuthError::WrongAudience));
        assert!(grant(&policy(), absent).is_ok());
    }

    #[test]
    fn issuer_rules() {
        let want = ClaimsPolicy {
            issuer: Some("auth.example".to_owned()),
            ..policy()
        };
        let ok = r#"{"sub":"a","exp":1800000000,"iss":"auth.example"}"#;
        let wrong = r#"{"sub":"a","exp":1800000000,"iss":"Auth.example"}"#;
        let absent = r#"{"sub":"a","exp":1800000000}"#;
        let bad_type = r#"{"sub":"a","exp":1800000000,"iss":7}"#;
        assert!(grant(&want, ok).is_ok());
        assert_eq!(grant(&want, wrong), Err(AuthError::WrongIssuer));
        assert_eq!(grant(&want, absent), Err(AuthError::WrongIssuer));
        assert_eq!(grant(&want, bad_type), Err(AuthError::BadClaims));
        // Unconfigured issuer: `iss` is not inspected at all.
        assert!(grant(&policy(), wrong).is_ok());
    }

    #[test]
    fn subject_rules() {
        let absent = r#"{"exp":1800000000}"#;
        let empty = r#"{"sub":"","exp":1800000000}"#;
        let number = r#"{"sub":42,"exp":1800000000}"#;
        assert_eq!(grant(&policy(), absent), Err(AuthError::MissingSubject));
        assert_eq!(grant(&policy(), empty), Err(AuthError::MissingSubject));
        assert_eq!(grant(&policy(), number), Err(AuthError::BadClaims));
        let at_max = format!(
            r#"{{"sub":"{}","exp":1800000000}}"#,
            "s".repeat(SUBJECT_BYTES_MAX)
        );
        assert!(grant(&policy(), &at_max).is_ok());
        let over = format!(
            r#"{{"sub":"{}","exp":1800000000}}"#,
            "s".repeat(SUBJECT_BYTES_MAX + 1)
        );
        assert_eq!(grant(&policy(), &over), Err(AuthError::BadClaims));
    }

    #[test]
    fn channel_lists_parse_independently() {
        let claims = r#"{"sub":"a","exp":1800000000,"channels":{"subscribe":["md.*","room.42"]}}"#;
        let g = match grant(&policy(), claims) {
            Ok(g) => g,
            Err(e) => panic!("{e:?}"),
        };
        assert!(g.subscribe.allows("md.btc"));
        assert!(g.subscribe.allows("room.42"));
        assert!(!g.subscribe.allows("room.43"));
        assert_eq!(g.publish, Permissions::none());
    }

    #[test]
    fn malformed_channel_claims_are_bad_claims() {
        for channels in [
            r#""md.*""#,
            r#"["md.*"]"#,
            r#"{"subscribe":"md.*"}"#,
            r#"{"subscribe":[1]}"#,
            r#"{"publish":["md*"]}"#,
            r#"{"publish":[""]}"#,
        ] {
            let claims = format!(r#"{{"sub":"a","exp":1800000000,"channels":{channels}}}"#);
            assert_eq!(
                grant(&policy(), &claims),
                Err(AuthError::BadClaims),
                "{channels}"
            );
        }
    }

    #[test]
    fn pattern_list_cap_is_enforced() {
        let list = |n: usize| {
            let items: Vec<String> = (0..n).map(|i| format!("\"c.{i}\"")).collect();
            format!(
                r#"{{"sub":"a","exp":1800000000,"channels":{{"publish":[{}]}}}}"#,
                items.join(",")
            )
        };
        let at_cap = grant(&policy(), &list(PATTERNS_PER_LIST_MAX));
        assert_eq!(
            at_cap.map(|g| g.publish.patterns().len()),
            Ok(PATTERNS_PER_LIST_MAX)
        );
        let over = grant(&policy(), &list(PATTERNS_PER_LIST_MAX + 1));
        assert_eq!(over, Err(AuthError::BadClaims));
    }

    #[test]
    fn claims_must_be_a_json_object() {
        assert_eq!(grant(&policy(), "[]"), Err(AuthError::Malformed));
        assert_eq!(grant(&policy(), "not json"), Err(AuthError::Malformed));
    }

    #[test]
    fn expiry_is_checked_before_other_claims() {
        let claims = r#"{"exp":1,"channels":"nonsense"}"#;
        assert_eq!(grant(&policy(), claims), Err(AuthError::Expired));
    }
}
