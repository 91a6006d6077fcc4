//! CPU time used by this process, from `/proc/self/stat`, so a load generator can tell whether it
//! was itself the bottleneck (a client near 100% of its core may be under-reporting the server).
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`), 100 on every Linux architecture that
/// matters here.
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time of this process (all threads), or `None` where `/proc` is missing.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&stat)
}

/// User + system CPU time of process `pid` (all threads), or `None` if it cannot be read.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// The share of one core that `pid` used over `window`, sampled from now, rounded to 0.01.
pub async fn busy_share(pid: u32, window: std::time::Duration) -> Option<f64> {
    let (before, start) = (cpu_time_of(pid)?, std::time::Instant::now());
    tokio::time::sleep(window).await;
    let used = cpu_time_of(pid)?.checked_sub(before)?;
    Some(share(used, start.elapsed()))
}

/// `used / wall`, rounded to 0.01.
pub fn share(used: Duration, wall: Duration) -> f64 {
    (used.as_secs_f64() / wall.as_secs_f64() * 100.0).round() / 100.0
}

fn parse_stat(stat: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of the full line are 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime() {
        let line = "123 (bench load) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(Duration::from_secs(3)));
    }

    #[test]
    fn reads_own_process() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_cpu_time().is_some());
            assert!(cpu_time_of(std::process::id()).is_some());
        }
    }

    #[test]
    fn share_rounds() {
        assert_eq!(
            share(Duration::from_millis(333), Duration::from_secs(1)),
            0.33
        );
    }
}
