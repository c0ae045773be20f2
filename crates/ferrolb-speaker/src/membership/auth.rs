//! Authenticated gossip frames: an outsider without the key can neither join nor evict a
//! member, and a recorded frame played again is refused.
//!
//! ```text
//!  "FLB1" | key id (1) | sender length (1) | sender | sequence (8, ns since the epoch) | payload | HMAC-SHA256 (32)
//! ```
//!
//! The sequence is the sender's clock, made strictly increasing. A receiver accepts a frame
//! only within `max_age` of its own clock and only once (a 64-frame window per sender), so a
//! replay is refused both right away and after the receiver restarts.

use std::collections::HashMap;

use ring::hmac;

const MAGIC: &[u8; 4] = b"FLB1";
const TAG_LEN: usize = 32;
const WINDOW: u64 = 64;

/// A gossip key: its id (carried in each frame so a rotation can accept two) and its secret.
#[derive(Clone)]
pub struct GossipKey {
    pub id: u8,
    key: hmac::Key,
}

impl GossipKey {
    /// A key whose id is derived from the secret, so every speaker names it alike.
    pub fn derived(secret: &[u8]) -> GossipKey {
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        GossipKey::new(digest.as_ref()[0], secret)
    }

    pub fn new(id: u8, secret: &[u8]) -> GossipKey {
        GossipKey {
            id,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GossipKey({})", self.id)
    }
}

/// The key frames are signed with, and every key accepted on receipt (it included).
#[derive(Debug, Clone)]
pub struct KeyRing {
    pub signing: GossipKey,
    pub accepted: Vec<GossipKey>,
}

impl KeyRing {
    /// One key, signing and accepted.
    pub fn single(secret: &[u8]) -> KeyRing {
        let key = GossipKey::derived(secret);
        KeyRing {
            signing: key.clone(),
            accepted: vec![key],
        }
    }

    /// Signs with `current`; accepts it and `previous` (a rotation in progress).
    pub fn rotating(current: &[u8], previous: Option<&[u8]>) -> KeyRing {
        let signing = GossipKey::derived(current);
        let mut accepted = vec![signing.clone()];
        accepted.extend(previous.map(GossipKey::derived));
        KeyRing { signing, accepted }
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("frame too short or not a ferrolb gossip frame")]
    Malformed,
    #[error("frame signed with key id {0}, which is not accepted")]
    UnknownKey(u8),
    #[error("signature does not verify")]
    BadSignature,
    #[error("frame from {sender} is outside the accepted time window")]
    Stale { sender: String },
    #[error("frame from {sender} was already received")]
    Replayed { sender: String },
}

impl AuthError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            AuthError::Malformed => "malformed",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Stale { .. } => "stale",
            AuthError::Replayed { .. } => "replayed",
        }
    }
}

/// Signs `payload` as `sender` with sequence `seq`.
pub fn seal(key: &GossipKey, sender: &str, seq: u64, payload: &[u8]) -> Vec<u8> {
    let sender = &sender.as_bytes()[..sender.len().min(255)];
    let mut frame = Vec::with_capacity(4 + 2 + sender.len() + 8 + payload.len() + TAG_LEN);
    frame.extend_from_slice(MAGIC);
    frame.push(key.id);
    frame.push(sender.len() as u8);
    frame.extend_from_slice(sender);
    frame.extend_from_slice(&seq.to_be_bytes());
    frame.extend_from_slice(payload);
    let tag = hmac::sign(&key.key, &frame);
    frame.extend_from_slice(tag.as_ref());
    frame
}

/// A verified frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub sender: &'a str,
    pub seq: u64,
    pub payload: &'a [u8],
}

/// Checks a frame's form and signature (not its freshness: see [`ReplayGuard`]).
pub fn open<'a>(keys: &KeyRing, frame: &'a [u8]) -> Result<Opened<'a>, AuthError> {
    if frame.len() < 4 + 2 + 8 + TAG_LEN || &frame[..4] != MAGIC {
        return Err(AuthError::Malformed);
    }
    let key_id = frame[4];
    let sender_len = usize::from(frame[5]);
    let body_end = frame.len() - TAG_LEN;
    let seq_at = 6 + sender_len;
    if seq_at + 8 > body_end {
        return Err(AuthError::Malformed);
    }
    // Ids come from the keys themselves, so two keys may share one: try each.
    let mut candidates = keys.accepted.iter().filter(|k| k.id == key_id).peekable();
    if candidates.peek().is_none() {
        return Err(AuthError::UnknownKey(key_id));
    }
    if !candidates.any(|k| hmac::verify(&k.key, &frame[..body_end], &frame[body_end..]).is_ok()) {
        return Err(AuthError::BadSignature);
    }
    let sender = std::str::from_utf8(&frame[6..seq_at]).map_err(|_| AuthError::Malformed)?;
    let seq = u64::from_be_bytes(frame[seq_at..seq_at + 8].try_into().expect("8 bytes"));
    Ok(Opened {
        sender,
        seq,
        payload: &frame[seq_at + 8..body_end],
    })
}

/// Remembers, per sender, the newest sequence and which of the 64 before it arrived.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashMap<String, (u64, u64)>,
}

impl ReplayGuard {
    /// Accepts `seq` from `sender` once, if within `max_age_ns` of `now_ns` either way.
    pub fn accept(
        &mut self,
        sender: &str,
        seq: u64,
        now_ns: u64,
        max_age_ns: u64,
    ) -> Result<(), AuthError> {
        if seq.abs_diff(now_ns) > max_age_ns {
            return Err(AuthError::Stale {
                sender: sender.to_string(),
            });
        }
        let Some((newest, window)) = self.seen.get_mut(sender) else {
            self.seen.insert(sender.to_string(), (seq, 1));
            return Ok(());
        };
        if seq > *newest {
            let shift = seq - *newest;
            *window = if shift >= WINDOW { 0 } else { *window << shift };
            *window |= 1;
            *newest = seq;
            return Ok(());
        }
        let back = *newest - seq;
        if back >= WINDOW || *window & (1 << back) != 0 {
            return Err(AuthError::Replayed {
                sender: sender.to_string(),
            });
        }
        *window |= 1 << back;
        Ok(())
    }

    /// Forgets senders not heard from since `cutoff_ns`: their old frames are stale anyway,
    /// and the map does not grow without bound.
    pub fn forget_older_than(&mut self, cutoff_ns: u64) {
        self.seen.retain(|_, (newest, _)| *newest >= cutoff_ns);
    }
}

/// A strictly increasing clock for sequence numbers.
#[derive(Debug, Default)]
pub struct SequenceClock {
    last: u64,
}

impl SequenceClock {
    pub fn next(&mut self, now_ns: u64) -> u64 {
        self.last = now_ns.max(self.last + 1);
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_sealed_frame_opens_with_the_same_key() {
        let keys = KeyRing::single(b"secret");
        let frame = seal(&keys.signing, "node-a", 42, b"hello");
        assert_eq!(
            open(&keys, &frame),
            Ok(Opened {
                sender: "node-a",
                seq: 42,
                payload: b"hello"
            })
        );
    }

    #[test]
    fn a_frame_signed_with_another_key_is_refused() {
        let ours = KeyRing::single(b"secret");
        // Another key under our key's id: the signature gives it away.
        let forged = GossipKey::new(ours.signing.id, b"other");
        let frame = seal(&forged, "intruder", 1, b"down node-a");
        assert_eq!(open(&ours, &frame), Err(AuthError::BadSignature));
        // Another key with its own id: refused before any signature is checked.
        let theirs = KeyRing::single(b"other");
        assert_ne!(theirs.signing.id, ours.signing.id);
        let frame = seal(&theirs.signing, "intruder", 1, b"down node-a");
        assert_eq!(
            open(&ours, &frame),
            Err(AuthError::UnknownKey(theirs.signing.id))
        );
    }

    #[test]
    fn a_changed_byte_breaks_the_signature() {
        let keys = KeyRing::single(b"secret");
        let mut frame = seal(&keys.signing, "node-a", 7, b"payload");
        let at = frame.len() - TAG_LEN - 1;
        frame[at] ^= 1;
        assert_eq!(open(&keys, &frame), Err(AuthError::BadSignature));
    }

    #[test]
    fn during_a_rotation_both_keys_are_accepted() {
        let old = GossipKey::new(1, b"old");
        let new = GossipKey::new(2, b"new");
        let ring = KeyRing {
            signing: new.clone(),
            accepted: vec![new.clone(), old.clone()],
        };
        assert!(open(&ring, &seal(&old, "a", 1, b"x")).is_ok());
        assert!(open(&ring, &seal(&new, "a", 2, b"x")).is_ok());
        let after = KeyRing {
            signing: new.clone(),
            accepted: vec![new],
        };
        assert_eq!(
            open(&after, &seal(&old, "a", 3, b"x")),
            Err(AuthError::UnknownKey(1))
        );
    }

    #[test]
    fn short_and_foreign_frames_are_malformed_not_panics() {
        let keys = KeyRing::single(b"secret");
        for len in 0..64 {
            let junk = vec![0xAB; len];
            assert!(open(&keys, &junk).is_err());
        }
        let mut bad_len = seal(&keys.signing, "node-a", 1, b"");
        bad_len[5] = 200;
        assert_eq!(open(&keys, &bad_len), Err(AuthError::Malformed));
    }

    #[test]
    fn a_replayed_frame_is_refused_and_reordering_is_not() {
        let mut guard = ReplayGuard::default();
        let now = 100 * SEC;
        assert!(guard.accept("a", now, now, SEC).is_ok());
        assert!(guard.accept("a", now + 2, now, SEC).is_ok());
        // Arrives late but not seen before: accepted once.
        assert!(guard.accept("a", now + 1, now, SEC).is_ok());
        assert!(matches!(
            guard.accept("a", now + 1, now, SEC),
            Err(AuthError::Replayed { .. })
        ));
        assert!(matches!(
            guard.accept("a", now + 2, now, SEC),
            Err(AuthError::Replayed { .. })
        ));
        // Another sender has its own window.
        assert!(guard.accept("b", now + 1, now, SEC).is_ok());
    }

    #[test]
    fn an_old_frame_is_refused_even_by_a_fresh_receiver() {
        let mut guard = ReplayGuard::default();
        let now = 100 * SEC;
        assert!(matches!(
            guard.accept("a", now - 2 * SEC, now, SEC),
            Err(AuthError::Stale { .. })
        ));
    }

    #[test]
    fn the_sequence_clock_never_repeats() {
        let mut clock = SequenceClock::default();
        let a = clock.next(5);
        let b = clock.next(5);
        let c = clock.next(3);
        assert!(a < b && b < c);
    }
}
