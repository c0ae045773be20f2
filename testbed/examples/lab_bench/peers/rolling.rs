//! A rolling restart of every speaker, as a DaemonSet update does it: one node at a time, the
//! speaker stopped (SIGTERM), started again, and the next only once it is ready by its
//! install's readiness probe, while the client asks every 10 ms on a new connection (1 s
//! timeout).

use super::*;

pub(super) struct Rolling {
    who: String,
    sent: u32,
    lost: u32,
    took: Duration,
}

pub(super) fn restart_all(lab: &mut Lab, bin: &Path, setting: Setting) -> Rolling {
    let stop = Arc::new(AtomicBool::new(false));
    let stream = request_stream(lab.ns(setting.client()), setting.target(), stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    for node in NODES {
        lab.signal(
            &setting.speaker(node),
            libc::SIGTERM,
            Duration::from_secs(30),
        );
        setting.restart(lab, bin, node);
        assert!(
            wait_for(Duration::from_secs(60), || setting.speaker_ready(lab, node)),
            "{}: {node}'s speaker not ready again",
            setting.label
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (sent, lost) = stream.join().unwrap();
    Rolling {
        who: setting.label.to_string(),
        sent,
        lost,
        took,
    }
}

pub(super) fn print(rows: &[Rolling]) {
    println!(
        "Rolling restart of the 3 speakers (SIGTERM, start, ready, 2 s, next), a request every 10 ms:"
    );
    println!("| implementation | requests lost | took |");
    println!("|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} of {} | {:.1} s |",
            r.who,
            r.lost,
            r.sent,
            r.took.as_secs_f64()
        );
    }
}
