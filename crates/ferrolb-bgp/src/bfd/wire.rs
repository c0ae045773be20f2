//! BFD Control packets (RFC 5880 4.1): the 24-octet mandatory section, checked before use.

use std::time::Duration;

/// Session states as they are sent on the wire (RFC 5880 4.1, "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

/// Why a session last left Up (RFC 5880 4.1, "Diag").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Diagnostic {
    None = 0,
    ControlDetectionTimeExpired = 1,
    EchoFunctionFailed = 2,
    NeighborSignaledDown = 3,
    ForwardingPlaneReset = 4,
    PathDown = 5,
    ConcatenatedPathDown = 6,
    AdministrativelyDown = 7,
    ReverseConcatenatedPathDown = 8,
    /// 9–31 are reserved; kept as received.
    Other = 31,
}

impl Diagnostic {
    fn from_bits(bits: u8) -> Diagnostic {
        match bits & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            _ => Diagnostic::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Diagnostic::None => "none",
            Diagnostic::ControlDetectionTimeExpired => "control detection time expired",
            Diagnostic::EchoFunctionFailed => "echo function failed",
            Diagnostic::NeighborSignaledDown => "neighbor signaled session down",
            Diagnostic::ForwardingPlaneReset => "forwarding plane reset",
            Diagnostic::PathDown => "path down",
            Diagnostic::ConcatenatedPathDown => "concatenated path down",
            Diagnostic::AdministrativelyDown => "administratively down",
            Diagnostic::ReverseConcatenatedPathDown => "reverse concatenated path down",
            Diagnostic::Other => "reserved",
        }
    }
}

/// The mandatory section of a Control packet. Intervals are in microseconds on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diagnostic: Diagnostic,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_multiplier: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub required_min_echo_rx: Duration,
}

/// Length of a Control packet without authentication.
pub const LENGTH: usize = 24;

/// Why a received packet was dropped (RFC 5880 6.8.6, first checks); each has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum Malformed {
    #[error("shorter than 24 octets")]
    Short,
    #[error("version is not 1")]
    Version,
    #[error("length field below 24 or beyond the datagram")]
    Length,
    #[error("detect multiplier 0")]
    ZeroMultiplier,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator 0")]
    ZeroDiscriminator,
    /// Authentication is not configured on any session, so a packet that carries it is dropped
    /// (RFC 5880 6.8.6: A bit set and no authentication in use).
    #[error("authentication present but not in use")]
    Authentication,
}

impl Malformed {
    pub const ALL: [Malformed; 7] = [
        Malformed::Short,
        Malformed::Version,
        Malformed::Length,
        Malformed::ZeroMultiplier,
        Malformed::Multipoint,
        Malformed::ZeroDiscriminator,
        Malformed::Authentication,
    ];

    /// A label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Malformed::Short => "short",
            Malformed::Version => "version",
            Malformed::Length => "length",
            Malformed::ZeroMultiplier => "zero_multiplier",
            Malformed::Multipoint => "multipoint",
            Malformed::ZeroDiscriminator => "zero_discriminator",
            Malformed::Authentication => "authentication",
        }
    }
}

fn micros(bytes: &[u8]) -> Duration {
    Duration::from_micros(u64::from(u32::from_be_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3],
    ])))
}

fn to_micros(d: Duration) -> [u8; 4] {
    u32::try_from(d.as_micros())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
}

impl ControlPacket {
    /// Parses a datagram's payload; every check of RFC 5880 6.8.6 that needs no session.
    pub fn decode(bytes: &[u8]) -> Result<ControlPacket, Malformed> {
        if bytes.len() < LENGTH {
            return Err(Malformed::Short);
        }
        if bytes[0] >> 5 != 1 {
            return Err(Malformed::Version);
        }
        let flags = bytes[1];
        let authenticated = flags & 0x04 != 0;
        let length = usize::from(bytes[3]);
        // With authentication the minimum is 26 (RFC 5880 6.8.6).
        let minimum = if authenticated { LENGTH + 2 } else { LENGTH };
        if length < minimum || length > bytes.len() {
            return Err(Malformed::Length);
        }
        if bytes[2] == 0 {
            return Err(Malformed::ZeroMultiplier);
        }
        if flags & 0x01 != 0 {
            return Err(Malformed::Multipoint);
        }
        let my_discriminator = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if my_discriminator == 0 {
            return Err(Malformed::ZeroDiscriminator);
        }
        if authenticated {
            return Err(Malformed::Authentication);
        }
        Ok(ControlPacket {
            diagnostic: Diagnostic::from_bits(bytes[0]),
            state: State::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_multiplier: bytes[2],
            my_discriminator,
            your_discriminator: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            desired_min_tx: micros(&bytes[12..16]),
            required_min_rx: micros(&bytes[16..20]),
            required_min_echo_rx: micros(&bytes[20..24]),
        })
    }

    pub fn encode(&self) -> [u8; LENGTH] {
        let mut out = [0u8; LENGTH];
        out[0] = (1 << 5) | (self.diagnostic as u8 & 0x1f);
        out[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.demand) << 1);
        out[2] = self.detect_multiplier;
        out[3] = LENGTH as u8;
        out[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        out[12..16].copy_from_slice(&to_micros(self.desired_min_tx));
        out[16..20].copy_from_slice(&to_micros(self.required_min_rx));
        out[20..24].copy_from_slice(&to_micros(self.required_min_echo_rx));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ControlPacket {
        ControlPacket {
            diagnostic: Diagnostic::ControlDetectionTimeExpired,
            state: State::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_multiplier: 3,
            my_discriminator: 7,
            your_discriminator: 9,
            desired_min_tx: Duration::from_millis(50),
            required_min_rx: Duration::from_millis(300),
            required_min_echo_rx: Duration::ZERO,
        }
    }

    #[test]
    fn round_trips_and_matches_the_rfc_layout() {
        let bytes = sample().encode();
        assert_eq!(bytes[0], 0x21, "version 1, diag 1");
        assert_eq!(bytes[1], 0xe0, "state Up, poll");
        assert_eq!(&bytes[12..16], &50_000u32.to_be_bytes());
        assert_eq!(ControlPacket::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn each_rfc_check_names_what_is_wrong() {
        let good = sample().encode();
        let with = |f: fn(&mut [u8; LENGTH])| {
            let mut b = good;
            f(&mut b);
            ControlPacket::decode(&b)
        };
        assert_eq!(ControlPacket::decode(&good[..23]), Err(Malformed::Short));
        assert_eq!(with(|b| b[0] = 0x41), Err(Malformed::Version));
        assert_eq!(with(|b| b[3] = 23), Err(Malformed::Length));
        assert_eq!(with(|b| b[3] = 25), Err(Malformed::Length));
        assert_eq!(with(|b| b[2] = 0), Err(Malformed::ZeroMultiplier));
        assert_eq!(with(|b| b[1] |= 1), Err(Malformed::Multipoint));
        assert_eq!(with(|b| b[4..8].fill(0)), Err(Malformed::ZeroDiscriminator));
        // A bit with a length that holds the auth section header.
        let mut auth = [0u8; 28];
        auth[..LENGTH].copy_from_slice(&good);
        auth[1] |= 0x04;
        auth[3] = 28;
        assert_eq!(ControlPacket::decode(&auth), Err(Malformed::Authentication));
        auth[3] = 24;
        assert_eq!(ControlPacket::decode(&auth), Err(Malformed::Length));
        // Trailing bytes past the length field are ignored, as the RFC allows.
        let mut long = [0u8; 40];
        long[..LENGTH].copy_from_slice(&good);
        assert_eq!(ControlPacket::decode(&long), Ok(sample()));
        // Counters are indexed by the reason.
        for (i, m) in Malformed::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
        }
    }
}
