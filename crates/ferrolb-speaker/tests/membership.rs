//! Gossip among speakers over real UDP on loopback.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrolb_speaker::membership::auth::{self, KeyRing};
use ferrolb_speaker::membership::{Membership, MembershipConfig};
use tokio::task::JoinHandle;

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn member(
    name: &str,
    port: u16,
    secret: &[u8],
    seeds: &[u16],
) -> (Membership, JoinHandle<()>) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut config = MembershipConfig::lan(name, addr, addr, KeyRing::single(secret));
    config.seeds = seeds
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
        .collect();
    config.join_timeout = Duration::from_millis(500);
    config.macs = vec![mac_of(name)];
    Membership::start(config).await.expect("gossip starts")
}

fn mac_of(name: &str) -> [u8; 6] {
    [2, 0, 0, 0, 0, name.as_bytes()[0]]
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn sees(m: &Membership, expected: &BTreeSet<String>, limit: Duration) -> bool {
    let mut live = m.live.clone();
    tokio::time::timeout(limit, live.wait_for(|l| l == expected))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speakers_with_the_same_key_join_and_see_a_killed_one_go() {
    let ports = [free_port(), free_port(), free_port()];
    let (a, _ta) = member("a", ports[0], b"key", &[]).await;
    let (b, _tb) = member("b", ports[1], b"key", &[ports[0]]).await;
    let (c, tc) = member("c", ports[2], b"key", &[ports[0]]).await;
    let all = names(&["a", "b", "c"]);
    for m in [&a, &b, &c] {
        assert!(
            sees(m, &all, Duration::from_secs(5)).await,
            "{:?}",
            m.live.borrow()
        );
        assert!(m.settled.load(Ordering::Relaxed));
    }
    // A crash: the task stops, nothing is said.
    tc.abort();
    let started = std::time::Instant::now();
    let rest = names(&["a", "b"]);
    assert!(
        sees(&a, &rest, Duration::from_secs(3)).await,
        "{:?}",
        a.live.borrow()
    );
    assert!(
        sees(&b, &rest, Duration::from_secs(3)).await,
        "{:?}",
        b.live.borrow()
    );
    eprintln!("crash noticed by both after {:?}", started.elapsed());
    assert!(a.counters.members_down.load(Ordering::Relaxed) >= 1);
    // Each learnt the others' MACs, and keeps the dead one's: a partitioned speaker still
    // claims addresses with it.
    for (m, others) in [(&a, ["b", "c"]), (&b, ["a", "c"])] {
        let macs = m.macs.borrow();
        for name in others {
            assert_eq!(macs.get(&mac_of(name)).map(String::as_str), Some(name));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speaker_that_leaves_is_dropped_at_once() {
    let ports = [free_port(), free_port()];
    let (a, _ta) = member("a", ports[0], b"key", &[]).await;
    let (b, _tb) = member("b", ports[1], b"key", &[ports[0]]).await;
    assert!(sees(&a, &names(&["a", "b"]), Duration::from_secs(5)).await);
    assert!(sees(&b, &names(&["a", "b"]), Duration::from_secs(5)).await);
    let started = std::time::Instant::now();
    b.leave().await;
    assert!(sees(&a, &names(&["a"]), Duration::from_millis(500)).await);
    eprintln!("leave noticed after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speaker_with_another_key_can_neither_join_nor_be_joined() {
    let ports = [free_port(), free_port(), free_port()];
    let (a, _ta) = member("a", ports[0], b"key", &[]).await;
    let (b, _tb) = member("b", ports[1], b"key", &[ports[0]]).await;
    let (intruder, _ti) = member("intruder", ports[2], b"guess", &[ports[0], ports[1]]).await;
    assert!(sees(&a, &names(&["a", "b"]), Duration::from_secs(5)).await);
    // Give the intruder time to try.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*a.live.borrow(), names(&["a", "b"]));
    assert_eq!(*b.live.borrow(), names(&["a", "b"]));
    assert_eq!(*intruder.live.borrow(), names(&["intruder"]));
    assert!(a.counters.refused.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_frame_is_refused() {
    let port = free_port();
    let (a, _ta) = member("a", port, b"key", &[]).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let keys = KeyRing::single(b"key");
    let frame = auth::seal(&keys.signing, "recorder", now, b"\x00\x01");
    let target = format!("127.0.0.1:{port}");
    socket.send_to(&frame, &target).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        a.counters.refused.load(Ordering::Relaxed),
        0,
        "first copy passes the checks"
    );
    socket.send_to(&frame, &target).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        a.counters.refused.load(Ordering::Relaxed),
        1,
        "the replay is refused"
    );
    assert_eq!(*a.live.borrow(), names(&["a"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_key_rotation_old_and_new_keys_interoperate() {
    let ports = [free_port(), free_port()];
    let (a, _ta) = member("a", ports[0], b"old", &[]).await;
    // b already signs with the new key but still accepts the old one.
    let addr: SocketAddr = format!("127.0.0.1:{}", ports[1]).parse().unwrap();
    let mut config =
        MembershipConfig::lan("b", addr, addr, KeyRing::rotating(b"new", Some(b"old")));
    config.seeds = vec![format!("127.0.0.1:{}", ports[0]).parse().unwrap()];
    let (b, _tb) = Membership::start(config).await.unwrap();
    // a does not accept the new key yet: no join.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*a.live.borrow(), names(&["a"]));
    // a moves to the rotation as well: both keys accepted, they join.
    a.set_keys(KeyRing::rotating(b"new", Some(b"old")));
    assert!(sees(&a, &names(&["a", "b"]), Duration::from_secs(3)).await);
    assert!(sees(&b, &names(&["a", "b"]), Duration::from_secs(3)).await);
}

/// A partition (here: one side speaks another key, so neither accepts the other's frames)
/// makes each side declare the other down. When it heals, each learns that the others had
/// declared it down and rejoins under a new generation (`rejoins`, on which the speaker
/// announces its addresses again: the others took them meanwhile), and both see each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_speaker_learns_on_healing_that_it_was_declared_down() {
    let ports = [free_port(), free_port()];
    let (a, _ta) = member("a", ports[0], b"key", &[ports[1]]).await;
    let (b, _tb) = member("b", ports[1], b"key", &[ports[0]]).await;
    let both = names(&["a", "b"]);
    assert!(sees(&a, &both, Duration::from_secs(5)).await);
    assert!(sees(&b, &both, Duration::from_secs(5)).await);
    b.set_keys(KeyRing::single(b"other"));
    assert!(sees(&a, &names(&["a"]), Duration::from_secs(3)).await);
    assert!(sees(&b, &names(&["b"]), Duration::from_secs(3)).await);
    let before = (*a.rejoins.borrow(), *b.rejoins.borrow());
    let healed = std::time::Instant::now();
    b.set_keys(KeyRing::single(b"key"));
    assert!(sees(&a, &both, Duration::from_secs(3)).await);
    assert!(sees(&b, &both, Duration::from_secs(3)).await);
    eprintln!("both see each other {:?} after the heal", healed.elapsed());
    for (m, was) in [(&a, before.0), (&b, before.1)] {
        let mut rejoins = m.rejoins.clone();
        let rejoined =
            tokio::time::timeout(Duration::from_secs(3), rejoins.wait_for(|n| *n > was)).await;
        assert!(
            rejoined.is_ok_and(|r| r.is_ok()),
            "{:?} did not learn it had been declared down",
            m.live.borrow()
        );
    }
}

/// What `m` has heard of `node`'s uplinks, once it has within `limit`.
async fn hears(
    m: &Membership,
    node: &str,
    expected: &ferrolb_speaker::uplinks::Uplinks,
    limit: Duration,
) -> bool {
    let mut uplinks = m.uplinks.clone();
    tokio::time::timeout(limit, uplinks.wait_for(|u| u.get(node) == Some(expected)))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplinks_reach_the_members_and_one_that_joins_later() {
    use ferrolb_speaker::uplinks::Uplinks;
    let uplinks = |subnet: &str| {
        let mut u = Uplinks::default();
        let (net, len) = subnet.split_once('/').unwrap();
        u.interfaces.insert(
            "eth0".into(),
            [(net.parse().unwrap(), len.parse().unwrap())].into(),
        );
        u
    };
    let ports = [free_port(), free_port(), free_port()];
    let (a, _ta) = member("a", ports[0], b"key", &[]).await;
    let (b, _tb) = member("b", ports[1], b"key", &[ports[0]]).await;
    assert!(sees(&b, &names(&["a", "b"]), Duration::from_secs(5)).await);
    let both = uplinks("192.0.2.0/24");
    a.tell_uplinks(both.clone());
    assert!(
        hears(&a, "a", &both, Duration::from_secs(1)).await,
        "its own"
    );
    let started = std::time::Instant::now();
    assert!(
        hears(&b, "a", &both, Duration::from_secs(2)).await,
        "{:?}",
        b.uplinks.borrow()
    );
    eprintln!("news heard after {:?}", started.elapsed());
    // A loss replaces it.
    let lost = Uplinks::default();
    a.tell_uplinks(lost.clone());
    assert!(hears(&b, "a", &lost, Duration::from_secs(2)).await);
    // A speaker that joins after the news was passed on (each member passes it on a few
    // times, within a second) hears it: told again for it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let told_before = a.counters.uplinks_told.load(Ordering::Relaxed);
    assert_eq!(told_before, 2);
    let (c, _tc) = member("c", ports[2], b"key", &[ports[0]]).await;
    assert!(sees(&c, &names(&["a", "b", "c"]), Duration::from_secs(5)).await);
    assert!(
        hears(&c, "a", &lost, Duration::from_secs(3)).await,
        "{:?}",
        c.uplinks.borrow()
    );
    assert!(a.counters.uplinks_told.load(Ordering::Relaxed) > told_before);
}
