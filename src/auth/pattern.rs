//! Channel patterns and the permission sets built from them.
//!
//! Owns: the pattern grammar that JWT `channels` claims use, and the match rule.
//! May not touch: channel-name validation (the command decoder owns what a legal
//! channel name is); this module only answers "does this pattern cover that name".
//!
//! Grammar (byte-exact, case-sensitive, no normalisation):
//! - `room.42` — exact: matches only the channel `room.42`.
//! - `md.*` — prefix: matches every channel that starts with `md.` and has at
//!   least one more byte, across any number of segments (`md.x`, `md.x.y`), but
//!   not `md` nor `md.` nor `mdx.y`.
//! - `*` — any: matches every channel.
//! - `*` anywhere else (`md*`, `*.x`, `a.*.b`, `**`), an empty pattern, a prefix
//!   with nothing before `.*` (`.*`), or a pattern longer than
//!   [`CHANNEL_PATTERN_BYTES_MAX`] is rejected with a [`PatternError`].
//!
//! Invariants: [`ChannelPattern::matches`] is O(len(channel)) with no allocation;
//! [`Permissions::allows`] is a linear scan, bounded because the claims decoder
//! caps each list at `crate::auth::PATTERNS_PER_LIST_MAX` entries.

use std::fmt;

/// Longest pattern accepted, in bytes.
///
/// Policy: a pattern longer than any sane channel name is a token-minting bug,
/// and refusing it keeps a grant's memory bounded (64 patterns x 256 bytes per
/// list). The lead should keep this >= the relay's channel-name maximum so an
/// exact pattern can always name any legal channel.
pub const CHANNEL_PATTERN_BYTES_MAX: usize = 256;

/// Why a pattern string is not a valid [`ChannelPattern`]; one variant per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is the empty string, which would name no channel.
    #[error("channel pattern is empty")]
    Empty,
    /// The pattern exceeds [`CHANNEL_PATTERN_BYTES_MAX`].
    #[error("channel pattern is longer than 256 bytes")]
    TooLong,
    /// `*` appears somewhere other than as the whole pattern or a final `.*`.
    #[error("'*' is only allowed as the whole pattern or as a final '.*'")]
    MisplacedWildcard,
    /// The pattern is `.*`: a prefix pattern needs at least one byte before `.*`.
    #[error("prefix pattern has nothing before '.*'")]
    EmptyPrefix,
}

/// One parsed channel pattern (see the module header for the grammar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPattern {
    kind: PatternKind,
}

/// Internal representation; the prefix form stores the prefix *including* the
/// trailing `.` so that matching is a single `starts_with` plus a length check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Any,
    Exact(Box<str>),
    PrefixWithDot(Box<str>),
}

impl ChannelPattern {
    /// Parses one pattern; see the module header for the grammar.
    ///
    /// # Errors
    ///
    /// The [`PatternError`] naming the grammar rule the string breaks.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if s.len() > CHANNEL_PATTERN_BYTES_MAX {
            return Err(PatternError::TooLong);
        }
        if s == "*" {
            return Ok(Self::from_kind(PatternKind::Any));
        }
        match s.strip_suffix('*') {
            Some(prefix_with_dot) => Self::parse_prefix(prefix_with_dot),
            None => Self::parse_exact(s),
        }
    }

    /// Reports whether `channel` is covered by this pattern. O(len(channel)).
    #[must_use]
    pub fn matches(&self, channel: &str) -> bool {
        match &self.kind {
            PatternKind::Any => true,
            PatternKind::Exact(name) => channel == &**name,
            PatternKind::PrefixWithDot(prefix) => {
                channel.len() > prefix.len() && channel.starts_with(&**prefix)
            }
        }
    }

    /// The pattern that matches every channel (`*`).
    #[must_use]
    pub fn any() -> Self {
        Self::from_kind(PatternKind::Any)
    }

    fn from_kind(kind: PatternKind) -> Self {
        Self { kind }
    }

    /// `prefix_with_dot` is the pattern minus its final `*`; it must end in `.`,
    /// be longer than that `.`, and hold no other `*`.
    fn parse_prefix(prefix_with_dot: &str) -> Result<Self, PatternError> {
        if !prefix_with_dot.ends_with('.') || prefix_with_dot.contains('*') {
            return Err(PatternError::MisplacedWildcard);
        }
        if prefix_with_dot.len() == 1 {
            return Err(PatternError::EmptyPrefix);
        }
        Ok(Self::from_kind(PatternKind::PrefixWithDot(
            prefix_with_dot.into(),
        )))
    }

    fn parse_exact(name: &str) -> Result<Self, PatternError> {
        if name.contains('*') {
            return Err(PatternError::MisplacedWildcard);
        }
        Ok(Self::from_kind(PatternKind::Exact(name.into())))
    }
}

impl fmt::Display for ChannelPattern {
    /// Writes the pattern back in its source syntax (for logs and audits).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PatternKind::Any => f.write_str("*"),
            PatternKind::Exact(name) => f.write_str(name),
            PatternKind::PrefixWithDot(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// The set of channels a connection may use for one action (subscribe or
/// publish): the union of its patterns. Empty means deny everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    patterns: Vec<ChannelPattern>,
}

impl Permissions {
    /// Permission for every channel (auth disabled, or a `*` grant).
    #[must_use]
    pub fn all() -> Self {
        Self::from_patterns(vec![ChannelPattern::any()])
    }

    /// Permission for no channel (the deny-by-default grant).
    #[must_use]
    pub fn none() -> Self {
        Self::from_patterns(Vec::new())
    }

    /// Builds a set from already-parsed patterns; the caller enforces the
    /// list-length cap (the claims decoder does).
    #[must_use]
    pub fn from_patterns(patterns: Vec<ChannelPattern>) -> Self {
        Self { patterns }
    }

    /// Reports whether any pattern covers `channel`. Linear in the number of
    /// patterns (capped at 64 per list by the claims decoder).
    #[must_use]
    pub fn allows(&self, channel: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(channel))
    }

    /// The patterns in claim order, e.g. to log what a grant contains.
    #[must_use]
    pub fn patterns(&self) -> &[ChannelPattern] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> ChannelPattern {
        match ChannelPattern::parse(s) {
            Ok(p) => p,
            Err(e) => panic!("pattern {s:?} should parse, got {e:?}"),
        }
    }

    #[test]
    fn prefix_pattern_requires_dot_and_one_more_byte() {
        let p = pat("md.*");
        assert!(!p.matches("md"));
        assert!(!p.matches("md."));
        assert!(p.matches("md.x"));
        assert!(p.matches("md.x.y.z"));
        assert!(!p.matches("mdx.y"));
        assert!(!p.matches("xmd.y"));
        assert!(!p.matches(""));
    }

    #[test]
    fn exact_pattern_matches_only_itself() {
        let p = pat("room.42");
        assert!(p.matches("room.42"));
        assert!(!p.matches("room.420"));
        assert!(!p.matches("room.4"));
        assert!(!p.matches("Room.42"));
        assert!(!p.matches("room.42."));
    }

    #[test]
    fn lone_star_matches_everything() {
        let p = pat("*");
        assert!(p.matches(""));
        assert!(p.matches("md"));
        assert!(p.matches("a.b.c"));
    }

    #[test]
    fn misplaced_wildcards_are_rejected() {
        for s in ["md*", "*.md", "a.*.b", "**", "*.*", "md.**", "a*b", "md.x*"] {
            assert_eq!(
                ChannelPattern::parse(s),
                Err(PatternError::MisplacedWildcard),
                "{s:?}"
            );
        }
    }

    #[test]
    fn empty_and_prefixless_and_oversize_patterns_are_rejected() {
        assert_eq!(ChannelPattern::parse(""), Err(PatternError::Empty));
        assert_eq!(ChannelPattern::parse(".*"), Err(PatternError::EmptyPrefix));
        let at_max = "a".repeat(CHANNEL_PATTERN_BYTES_MAX);
        assert!(ChannelPattern::parse(&at_max).is_ok());
        let over_max = "a".repeat(CHANNEL_PATTERN_BYTES_MAX + 1);
        assert_eq!(ChannelPattern::parse(&over_max), Err(PatternError::TooLong));
    }

    #[test]
    fn multibyte_prefix_matches_by_bytes() {
        let p = pat("é.*");
        assert!(p.matches("é.ü"));
        assert!(!p.matches("é."));
        assert!(!p.matches("e.x"));
    }

    #[test]
    fn display_round_trips_source_syntax() {
        for s in ["*", "md.*", "room.42", "a.b.*"] {
            assert_eq!(pat(s).to_string(), s);
        }
    }

    #[test]
    fn permissions_are_the_union_of_their_patterns() {
        let perms = Permissions::from_patterns(vec![pat("md.*"), pat("room.42")]);
        assert!(perms.allows("md.btc"));
        assert!(perms.allows("room.42"));
        assert!(!perms.allows("room.43"));
        assert!(!perms.allows("md"));
        assert_eq!(perms.patterns().len(), 2);
    }

    #[test]
    fn none_denies_and_all_allows() {
        assert!(!Permissions::none().allows("room.42"));
        assert!(!Permissions::none().allows(""));
        assert!(!Permissions::default().allows("x"));
        assert!(Permissions::all().allows("room.42"));
        assert!(Permissions::all().allows(""));
    }
}
