//! CPU time used by a process (`/proc/PID/stat`) and by the whole machine (`/proc/stat`), so a
//! load generator can tell whether the server was saturated, whether it was itself the bottleneck
//! (a client near 100% of its core may be under-reporting the server), and whether other
//! processes took CPU during the run.
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`), 100 on every Linux architecture that
/// matters here.
const TICKS_PER_SECOND: u64 = 100;

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

/// Idle time of all cores together (idle + iowait) and the number of cores, from `/proc/stat`.
///
/// Only the idle time is used: the kernel measures it exactly, while the busy columns are sampled
/// at timer ticks and miss much of a network load's short bursts (on this machine's virtual
/// machine, a third of it).
pub fn machine_idle() -> Option<(Duration, usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_proc_stat(&stat)
}

/// How many cores the whole machine kept busy over `window`, sampled from now, rounded to 0.01
/// (e.g. 1.85 of 2): with the shares of the processes under test, what other processes took.
pub async fn machine_busy_cores(window: Duration) -> Option<f64> {
    let ((idle_a, cores), start) = (machine_idle()?, std::time::Instant::now());
    tokio::time::sleep(window).await;
    let (idle_b, _) = machine_idle()?;
    let wall = start.elapsed().as_secs_f64();
    let idle = idle_b.saturating_sub(idle_a).as_secs_f64() / wall;
    Some(((cores as f64 - idle).max(0.0) * 100.0).round() / 100.0)
}

fn parse_proc_stat(stat: &str) -> Option<(Duration, usize)> {
    let mut lines = stat.lines();
    let all: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait ...
    let idle = all.get(3)? + all.get(4).unwrap_or(&0);
    let cores = lines
        .take_while(|l| l.starts_with("cpu"))
        .filter(|l| l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some((
        Duration::from_millis(idle * 1000 / TICKS_PER_SECOND),
        cores.max(1),
    ))
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
            assert!(cpu_time_of(std::process::id()).is_some());
        }
    }

    #[test]
    fn parses_proc_stat() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n\
                    cpu1 50 0 25 400 25 0 0 0 0 0\nintr 1 2 3\n";
        assert_eq!(
            parse_proc_stat(stat),
            Some((Duration::from_millis(8500), 2))
        );
        if std::path::Path::new("/proc/stat").exists() {
            assert!(machine_idle().is_some_and(|(_, c)| c >= 1));
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
