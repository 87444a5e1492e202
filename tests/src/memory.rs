//! A node's memory as the kernel counts it (`/proc/<pid>/status`), for tests that bound what
//! one request may cost.

/// `VmHWM` (peak resident memory) of `pid`, in bytes.
///
/// # Panics
/// When `/proc/<pid>/status` cannot be read or has no `VmHWM` line.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb * 1024
}

/// Resets `pid`'s peak resident memory to its current one (proc(5), `clear_refs` value 5).
///
/// # Panics
/// When `/proc/<pid>/clear_refs` cannot be written (another user's process).
pub fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}
