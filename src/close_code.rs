//! Application close codes (RFC 6455 §7.4.2: 4000-4999 are for applications) and the range
//! convention every wsrelay feature and the client library follow:
//!
//! | range     | meaning for the client          | codes the relay sends                        |
//! |-----------|---------------------------------|----------------------------------------------|
//! | 4000-4099 | do not reconnect                | 4001 unauthorized, 4008 auth timeout          |
//! | 4100-4199 | reconnect with backoff          | 4100 slow consumer, 4101 rate limited         |
//! | 4200-4299 | reconnect at once               | 4200 server draining                          |
//!
//! The relay never sends 4003, 4102 or 4201: 4003 and 4102 are kept for applications that
//! follow the convention, and 4201 is only reported by the client library
//! (`client/event.rs`: its own heartbeat timed out). docs/PROTOCOL.md lists the same.
//!
//! Standard codes keep their RFC meaning: 1000 normal, 1001 going away, 1002 protocol error,
//! 1007 invalid payload, 1008 policy, 1009 too big, 1011 internal error.

/// 4001: the token was missing, invalid or expired.
pub const UNAUTHORIZED: u16 = 4001;
/// 4003: the token does not allow what was asked (not sent by the relay: reserved).
pub const FORBIDDEN: u16 = 4003;
/// 4008: no `auth` message within the auth timeout.
pub const AUTH_TIMEOUT: u16 = 4008;
/// 4100: the connection's outbox overflowed (slow consumer); reconnect with backoff and recover
/// with `since`.
pub const SLOW_CONSUMER: u16 = 4100;
/// 4101: over a rate limit.
pub const RATE_LIMITED: u16 = 4101;
/// 4102: the server is full (not sent by the relay, which answers 503 before the upgrade:
/// reserved).
pub const SERVER_FULL: u16 = 4102;
/// 4200: the server is draining (rolling restart); reconnect at once, to another instance.
pub const DRAINING: u16 = 4200;
/// 4201: the heartbeat was not answered in time (the client library's code for its own
/// heartbeat timeout; the relay closes the TCP connection instead).
pub const HEARTBEAT_TIMEOUT: u16 = 4201;

/// What a client should do after a close with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectAdvice {
    /// Do not reconnect (4000-4099, 1002, 1003, 1007, 1008, 1009 and 1000 after our own close).
    Never,
    /// Reconnect with exponential backoff (4100-4199, 1001, 1006, 1011, other codes).
    WithBackoff,
    /// Reconnect at once (4200-4299).
    AtOnce,
}

/// The convention above as a function, for the client library.
pub fn reconnect_advice(code: u16) -> ReconnectAdvice {
    match code {
        4000..=4099 | 1002 | 1003 | 1007 | 1008 | 1009 => ReconnectAdvice::Never,
        4200..=4299 => ReconnectAdvice::AtOnce,
        _ => ReconnectAdvice::WithBackoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_convention() {
        assert_eq!(reconnect_advice(UNAUTHORIZED), ReconnectAdvice::Never);
        assert_eq!(
            reconnect_advice(SLOW_CONSUMER),
            ReconnectAdvice::WithBackoff
        );
        assert_eq!(reconnect_advice(DRAINING), ReconnectAdvice::AtOnce);
        assert_eq!(reconnect_advice(1001), ReconnectAdvice::WithBackoff);
        assert_eq!(reconnect_advice(1002), ReconnectAdvice::Never);
    }
}
