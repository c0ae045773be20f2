//! How much memory a process holds, as the benches report it: from `/proc/<pid>/status`.

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
}
