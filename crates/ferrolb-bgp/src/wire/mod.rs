//! The BGP-4 wire format (RFC 4271) with the extensions ferrolb speaks: multiprotocol (RFC 4760),
//! 4-octet AS numbers (RFC 6793), route refresh (RFC 2918), graceful restart (RFC 4724),
//! communities (RFC 1997), large communities (RFC 8092), shutdown messages (RFC 9003).
//!
//! Every length is checked before a byte is read; malformed input becomes a [`Notification`] to
//! send, never a panic.

pub mod open;
pub mod update;

use std::fmt;

pub use open::{Afi, Capability, GracefulRestart, Open, Safi};
pub use update::{
    Prefix, RouteAttributes, UpdateBuilder, UpdateVerdict, WirePrefix, link_bandwidth,
    validate_update,
};

pub const MARKER: [u8; 16] = [0xff; 16];
pub const HEADER_LEN: usize = 19;
/// RFC 4271 4.1 (extended messages are not negotiated).
pub const MAX_MESSAGE_LEN: usize = 4096;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;
const TYPE_ROUTE_REFRESH: u8 = 5;

/// A NOTIFICATION (RFC 4271 4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// NOTIFICATION error codes.
pub mod codes {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;

    // Message header subcodes.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
    // OPEN subcodes.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    // UPDATE subcodes.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    // FSM subcodes (RFC 6608).
    pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    // Cease subcodes (RFC 4486).
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_COLLISION: u8 = 7;
    /// RFC 9384: the session went down because BFD declared the peer unreachable.
    pub const BFD_DOWN: u8 = 10;
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Self {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// Cease / Administrative Shutdown with an RFC 9003 message (UTF-8, at most 255 bytes,
    /// cut at a character boundary).
    pub fn shutdown(message: &str) -> Self {
        let mut end = message.len().min(255);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = vec![end as u8];
        data.extend_from_slice(&message.as_bytes()[..end]);
        Notification::new(codes::CEASE, codes::ADMINISTRATIVE_SHUTDOWN, data)
    }

    /// The RFC 9003 message of a Cease / Administrative Shutdown or Reset, if well formed.
    pub fn shutdown_message(&self) -> Option<String> {
        if self.code != codes::CEASE
            || !matches!(
                self.subcode,
                codes::ADMINISTRATIVE_SHUTDOWN | codes::ADMINISTRATIVE_RESET
            )
        {
            return None;
        }
        let (len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(*len))?;
        String::from_utf8(text.to_vec()).ok()
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NOTIFICATION {}/{}", self.code, self.subcode)?;
        if let Some(m) = self.shutdown_message() {
            write!(f, " ({m:?})")?;
        }
        Ok(())
    }
}

/// A ROUTE-REFRESH request (RFC 2918).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: u16,
    pub safi: u8,
}

/// A decoded message. UPDATEs are kept as bytes: ferrolb validates what it receives and learns
/// nothing from it (see [`validate_update`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Vec<u8>),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// How many bytes the next message needs, from its header: `Ok(None)` while fewer than 19 bytes
/// are buffered, `Ok(Some(len))` once the header is readable and valid.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Notification> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16] != MARKER {
        return Err(Notification::new(
            codes::MESSAGE_HEADER,
            codes::CONNECTION_NOT_SYNCHRONIZED,
            Vec::new(),
        ));
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    let ty = buf[18];
    let min = match ty {
        TYPE_OPEN => 29,
        TYPE_UPDATE => 23,
        TYPE_NOTIFICATION => 21,
        TYPE_KEEPALIVE => 19,
        TYPE_ROUTE_REFRESH => 23,
        _ => {
            return Err(Notification::new(
                codes::MESSAGE_HEADER,
                codes::BAD_MESSAGE_TYPE,
                vec![ty],
            ));
        }
    };
    let bad_len = len < min || len > MAX_MESSAGE_LEN || (ty == TYPE_KEEPALIVE && len != HEADER_LEN);
    if bad_len {
        return Err(Notification::new(
            codes::MESSAGE_HEADER,
            codes::BAD_MESSAGE_LENGTH,
            (len as u16).to_be_bytes().to_vec(),
        ));
    }
    Ok(Some(len))
}

/// Decodes one whole message (as delimited by [`frame_len`]).
pub fn decode(frame: &[u8]) -> Result<Message, Notification> {
    let len = frame_len(frame)?.ok_or_else(|| {
        Notification::new(codes::MESSAGE_HEADER, codes::BAD_MESSAGE_LENGTH, Vec::new())
    })?;
    if frame.len() != len {
        return Err(Notification::new(
            codes::MESSAGE_HEADER,
            codes::BAD_MESSAGE_LENGTH,
            (frame.len() as u16).to_be_bytes().to_vec(),
        ));
    }
    let body = &frame[HEADER_LEN..];
    match frame[18] {
        TYPE_OPEN => Open::decode(body).map(Message::Open),
        TYPE_UPDATE => Ok(Message::Update(body.to_vec())),
        TYPE_NOTIFICATION => Ok(Message::Notification(Notification::new(
            body[0],
            body[1],
            body[2..].to_vec(),
        ))),
        TYPE_KEEPALIVE => Ok(Message::Keepalive),
        TYPE_ROUTE_REFRESH => Ok(Message::RouteRefresh(RouteRefresh {
            afi: u16::from_be_bytes([body[0], body[1]]),
            safi: body[3],
        })),
        // frame_len accepted only the types above.
        other => Err(Notification::new(
            codes::MESSAGE_HEADER,
            codes::BAD_MESSAGE_TYPE,
            vec![other],
        )),
    }
}

/// Wraps a body in a header.
pub(crate) fn with_header(ty: u8, body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(ty);
    out.extend_from_slice(body);
    out
}

/// Encodes a message; UPDATE bodies come from [`UpdateBuilder`].
pub fn encode(message: &Message) -> Vec<u8> {
    match message {
        Message::Open(o) => with_header(TYPE_OPEN, &o.encode()),
        Message::Update(body) => with_header(TYPE_UPDATE, body),
        Message::Notification(n) => {
            // Truncated to fit: a NOTIFICATION's data cannot exceed the message size.
            let room = MAX_MESSAGE_LEN - HEADER_LEN - 2;
            let mut body = vec![n.code, n.subcode];
            body.extend_from_slice(&n.data[..n.data.len().min(room)]);
            with_header(TYPE_NOTIFICATION, &body)
        }
        Message::Keepalive => with_header(TYPE_KEEPALIVE, &[]),
        Message::RouteRefresh(r) => {
            let mut body = r.afi.to_be_bytes().to_vec();
            body.push(0);
            body.push(r.safi);
            with_header(TYPE_ROUTE_REFRESH, &body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_nineteen_bytes_both_ways() {
        let bytes = encode(&Message::Keepalive);
        let mut want = vec![0xff; 16];
        want.extend_from_slice(&[0, 19, 4]);
        assert_eq!(bytes, want);
        assert_eq!(decode(&bytes), Ok(Message::Keepalive));
    }

    #[test]
    fn header_errors_become_notifications() {
        let mut bad_marker = encode(&Message::Keepalive);
        bad_marker[0] = 0;
        assert_eq!(
            frame_len(&bad_marker).unwrap_err().subcode,
            codes::CONNECTION_NOT_SYNCHRONIZED
        );
        let mut short = encode(&Message::Keepalive);
        short[17] = 18;
        assert_eq!(
            frame_len(&short).unwrap_err().subcode,
            codes::BAD_MESSAGE_LENGTH
        );
        let mut huge = encode(&Message::Keepalive);
        huge[16] = 0x10;
        huge[17] = 0x01;
        assert_eq!(
            frame_len(&huge).unwrap_err().subcode,
            codes::BAD_MESSAGE_LENGTH
        );
        let mut ty = encode(&Message::Keepalive);
        ty[18] = 9;
        assert_eq!(frame_len(&ty).unwrap_err().subcode, codes::BAD_MESSAGE_TYPE);
        assert_eq!(frame_len(&[0xff; 10]), Ok(None));
    }

    #[test]
    fn notification_round_trips_without_extra_bytes() {
        let n = Notification::new(codes::CEASE, codes::PEER_DECONFIGURED, Vec::new());
        let bytes = encode(&Message::Notification(n.clone()));
        assert_eq!(bytes.len(), 21, "no bytes appended to the data");
        assert_eq!(decode(&bytes), Ok(Message::Notification(n)));
    }

    #[test]
    fn shutdown_message_follows_rfc_9003() {
        let n = Notification::shutdown("maintenance: node drained");
        assert_eq!(n.data[0] as usize, "maintenance: node drained".len());
        assert_eq!(
            n.shutdown_message().as_deref(),
            Some("maintenance: node drained")
        );
        let long = "é".repeat(200);
        let cut = Notification::shutdown(&long);
        assert!(cut.data.len() <= 256);
        assert!(
            cut.shutdown_message().is_some(),
            "cut at a character boundary"
        );
        let lying = Notification::new(codes::CEASE, codes::ADMINISTRATIVE_SHUTDOWN, vec![50, b'x']);
        assert_eq!(lying.shutdown_message(), None);
    }

    #[test]
    fn route_refresh_round_trips() {
        let rr = RouteRefresh { afi: 2, safi: 1 };
        let bytes = encode(&Message::RouteRefresh(rr));
        assert_eq!(&bytes[16..], &[0, 23, 5, 0, 2, 0, 1]);
        assert_eq!(decode(&bytes), Ok(Message::RouteRefresh(rr)));
    }
}
