//! Close codes (RFC 6455 7.4 and the IANA registry) as a type, so a code the peer chose and a
//! code the host sends cannot be mixed up with other numbers, and metrics can bound them.

use std::fmt;

/// A WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// Not sent on the wire: the peer's close frame carried no code.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// Not sent on the wire: the connection ended without a close frame.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    pub const POLICY: CloseCode = CloseCode(1008);
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    pub const INTERNAL: CloseCode = CloseCode(1011);
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// A code a peer (or a plugin) may put in a close frame; `None` for the reserved ones.
    pub fn from_wire(code: u16) -> Option<CloseCode> {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999).then_some(CloseCode(code))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// The code as a metric label: the registered codes by number, every application code
    /// (3000-4999, chosen by peers and plugins) as `other`, so a client cannot grow the series.
    pub fn metric_label(self) -> &'static str {
        match self.0 {
            1000 => "1000",
            1001 => "1001",
            1002 => "1002",
            1003 => "1003",
            1005 => "1005",
            1006 => "1006",
            1007 => "1007",
            1008 => "1008",
            1009 => "1009",
            1010 => "1010",
            1011 => "1011",
            1012 => "1012",
            1013 => "1013",
            1014 => "1014",
            _ => "other",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codes_a_peer_may_send_come_from_the_wire() {
        for ok in [1000, 1003, 1007, 1014, 3000, 4999] {
            assert_eq!(CloseCode::from_wire(ok).map(CloseCode::get), Some(ok));
        }
        for reserved in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert_eq!(CloseCode::from_wire(reserved), None, "{reserved}");
        }
    }

    #[test]
    fn application_codes_share_one_metric_label() {
        assert_eq!(CloseCode::NORMAL.metric_label(), "1000");
        assert_eq!(CloseCode::ABNORMAL.metric_label(), "1006");
        assert_eq!(CloseCode::from_wire(4321).map(CloseCode::metric_label), Some("other"));
    }
}
