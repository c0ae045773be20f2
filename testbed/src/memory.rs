//! How much memory a process holds and CPU time it used, as the benches report them: from
//! `/proc/<pid>/status` and `/proc/<pid>/stat`.

/// A memory figure `/proc/<pid>/status` gives.
#[derive(Debug, Clone, Copy)]
pub enum Memory {
    /// `VmRSS`: resident now.
    Resident,
    /// `VmHWM`: the most ever resident.
    PeakResident,
}

/// `what` of process `pid` (this process when `None`), in KiB; 0 when it cannot be read.
pub fn kib(pid: Option<u32>, what: Memory) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let field = match what {
        Memory::Resident => "VmRSS:",
        Memory::PeakResident => "VmHWM:",
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The CPU time process `pid` has used, user and system, in seconds; 0 when it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields; `rest` starts at the 3rd.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / per_second as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_holds_some_memory_and_its_peak_is_at_least_that() {
        let now = kib(None, Memory::Resident);
        assert!(now > 0);
        assert!(kib(None, Memory::PeakResident) >= now);
        assert_eq!(kib(Some(u32::MAX), Memory::Resident), 0);
    }

    #[test]
    fn this_process_has_used_cpu_time_and_it_grows_with_work() {
        let me = std::process::id();
        let before = cpu_seconds(me);
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(
            cpu_seconds(me) >= before + 0.05,
            "{before} then {}",
            cpu_seconds(me)
        );
        assert_eq!(cpu_seconds(u32::MAX), 0.0);
    }
}
