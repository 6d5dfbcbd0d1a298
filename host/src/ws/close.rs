/// WebSocket close codes the host sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode;

impl CloseCode {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    /// Not sent on the wire: the connection ended without a close frame.
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const RESTART: u16 = 1012;
    pub const TRY_AGAIN: u16 = 1013;
}

/// Close codes a peer may legitimately send (RFC 6455 7.4 and the IANA registry).
pub fn valid_peer_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
