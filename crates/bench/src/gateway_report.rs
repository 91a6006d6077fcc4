//! Turns the JSON lines of a `bench/gateway.sh` run into a Markdown summary.
//!
//! Lines carry a `phase` (`throughput`: closed loop, or `fixed_rate`: open loop), a `target`
//! (`direct`, `nginx`, `portcullis`, or `hyper`: the bare hyper proxy `bench-proxy`, the floor of
//! the HTTP stack portcullis is built on; `noaudit`: portcullis with the audit log off) and a
//! `round`; the proxies' lines carry the proxy's CPU
//! share as `server_cpu`, every line the upstream's as `upstream_cpu`, the load generator's as
//! `client_cpu` and the cores the whole machine kept busy as `machine_cpu`. A line with
//! `"phase":"skipped"` says why a target was not measured (`reason`).
use std::fmt::Write as _;

use serde_json::Value;

use crate::report::{fmt, median, medians, num};

/// Share of nginx's throughput portcullis must reach.
pub const GOAL_NGINX_RATIO: f64 = 0.95;
/// Largest p99 latency portcullis may add over the direct path at half load, in milliseconds.
pub const GOAL_ADDED_P99_MS: f64 = 0.2;
/// Below this share of its core a proxy was not the bottleneck of a closed-loop run.
const PROXY_SATURATED: f64 = 0.90;
/// Above this much of a core used beyond the three processes, a run was disturbed: the kernel's
/// loopback work that is charged to none of them takes 0.05 (direct) to 0.2 (through a proxy) of a
/// core on this machine; more is other processes.
const OTHER_BUSY: f64 = 0.30;

/// The CPU (in cores) the machine used in a run's measured window beyond the proxy, the upstream
/// and the load generator: other processes, and kernel work not charged to any of them.
pub fn other_cpu(v: &Value) -> Option<f64> {
    let known: f64 = ["server_cpu", "upstream_cpu", "client_cpu"]
        .iter()
        .filter_map(|k| num(v, k))
        .sum();
    num(v, "machine_cpu").map(|m| (m - known).max(0.0))
}

/// The targets, in the order of the tables, with their names there.
const TARGETS: [(&str, &str); 6] = [
    ("direct", "(a) direct"),
    ("nginx", "(b) nginx"),
    ("portcullis", "(c) portcullis"),
    ("hyper", "(d) bare hyper proxy"),
    ("noaudit", "(e) portcullis, audit log off"),
    (
        "noanomaly",
        "(f) portcullis, audit log and anomaly detection off",
    ),
];
/// Share of its throughput without anomaly detection that portcullis must keep with it.
pub const GOAL_ANOMALY_RATIO: f64 = 0.97;
/// (e) / (f) per round: anomaly detection on / off (both with the audit log off).
pub fn anomaly_ratios(runs: &[Value]) -> Vec<(u64, f64)> {
    per_round(runs, "throughput", ("noaudit", "noanomaly"), "rps", false)
}

/// Share of its throughput without the audit log that portcullis must keep with it.
pub const GOAL_AUDIT_RATIO: f64 = 0.95;

fn lines<'a>(runs: &'a [Value], phase: &str, target: &str) -> Vec<&'a Value> {
    runs.iter()
        .filter(|r| r["phase"] == phase && r["target"] == target)
        .collect()
}

fn rounds(runs: &[Value], phase: &str) -> Vec<u64> {
    let mut out: Vec<u64> = runs
        .iter()
        .filter(|r| r["phase"] == phase)
        .filter_map(|r| r["round"].as_u64())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn of_round<'a>(runs: &'a [Value], phase: &str, target: &str, round: u64) -> Option<&'a Value> {
    runs.iter().find(|r| {
        r["phase"] == phase && r["target"] == target && r["round"].as_u64() == Some(round)
    })
}

/// `combine` of the lines of `a` and `b` in each round of `phase` where both ran, in round order.
fn pair_per_round(
    runs: &[Value],
    phase: &str,
    (a, b): (&str, &str),
    combine: impl Fn(&Value, &Value) -> Option<f64>,
) -> Vec<(u64, f64)> {
    rounds(runs, phase)
        .into_iter()
        .filter_map(|round| {
            let (x, y) = (
                of_round(runs, phase, a, round)?,
                of_round(runs, phase, b, round)?,
            );
            Some((round, combine(x, y)?))
        })
        .collect()
}

/// `key` of `a` divided (or, with `diff`, minus) `key` of `b`, per round, in round order.
fn per_round(
    runs: &[Value],
    phase: &str,
    pair: (&str, &str),
    key: &str,
    diff: bool,
) -> Vec<(u64, f64)> {
    pair_per_round(runs, phase, pair, |x, y| {
        let (x, y) = (num(x, key)?, num(y, key)?);
        match diff {
            true => Some(x - y),
            false if y > 0.0 => Some(x / y),
            false => None,
        }
    })
}

/// Per round: portcullis' throughput over nginx's.
pub fn nginx_ratios(runs: &[Value]) -> Vec<(u64, f64)> {
    per_round(runs, "throughput", ("portcullis", "nginx"), "rps", false)
}

/// Per round: portcullis' throughput over the bare hyper proxy's (what portcullis' own work
/// costs on top of its HTTP stack).
pub fn floor_ratios(runs: &[Value]) -> Vec<(u64, f64)> {
    per_round(runs, "throughput", ("portcullis", "hyper"), "rps", false)
}

/// Per round: the bare hyper proxy's throughput over nginx's (the HTTP stack's own distance to
/// nginx).
pub fn floor_nginx_ratios(runs: &[Value]) -> Vec<(u64, f64)> {
    per_round(runs, "throughput", ("hyper", "nginx"), "rps", false)
}

/// Per round: portcullis' throughput with the audit log over its throughput without.
pub fn audit_ratios(runs: &[Value]) -> Vec<(u64, f64)> {
    per_round(runs, "throughput", ("portcullis", "noaudit"), "rps", false)
}

/// Per round of `phase`: portcullis' requests per second of its own CPU time with the audit log
/// over those without (at a fixed rate: the inverse ratio of the CPU time a request costs). It
/// divides out how much CPU time each run got, not how fast that time ran: on a machine whose
/// speed drifts it moves as much as the throughput ratio; the side-by-side phase is the steady
/// measure.
pub fn audit_cpu_ratios(runs: &[Value], phase: &str) -> Vec<(u64, f64)> {
    let per_cpu = |v: &Value| Some(num(v, "rps")? / num(v, "server_cpu").filter(|c| *c > 0.0)?);
    pair_per_round(runs, phase, ("portcullis", "noaudit"), |on, off| {
        let (on, off) = (per_cpu(on)?, per_cpu(off)?);
        (off > 0.0).then(|| on / off)
    })
}

/// Per round of the side-by-side phase ((c) and (e) loaded at once on the server core): (c)'s
/// throughput over (e)'s.
pub fn side_by_side_ratios(runs: &[Value]) -> Vec<(u64, f64)> {
    per_round(
        runs,
        "side_by_side",
        ("portcullis", "noaudit"),
        "rps",
        false,
    )
}

/// Per round of the side-by-side phase: the share of the server core (c) and (e) used together.
fn side_by_side_cpu(runs: &[Value]) -> Vec<f64> {
    pair_per_round(runs, "side_by_side", ("portcullis", "noaudit"), |c, e| {
        Some(num(c, "server_cpu")? + num(e, "server_cpu")?)
    })
    .into_iter()
    .map(|(_, cpu)| cpu)
    .collect()
}

/// Below this share of the server core used by (c) and (e) together, the core was not what
/// limited a side-by-side round.
const PAIR_SATURATED: f64 = 0.90;

/// Per round: portcullis' throughput over the direct path's.
pub fn direct_ratios(runs: &[Value]) -> Vec<(u64, f64)> {
    per_round(runs, "throughput", ("portcullis", "direct"), "rps", false)
}

/// Per round at the fixed rate: the p99 of `target` minus the direct path's, in µs.
pub fn added_p99_us(runs: &[Value], target: &str) -> Vec<(u64, f64)> {
    per_round(runs, "fixed_rate", (target, "direct"), "p99_us", true)
}

fn median_of(v: &[(u64, f64)]) -> Option<f64> {
    median(&v.iter().map(|(_, x)| *x).collect::<Vec<_>>())
}

fn find(v: &[(u64, f64)], round: u64) -> Option<f64> {
    v.iter().find(|(r, _)| *r == round).map(|(_, x)| *x)
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// The side-by-side phase: its ratios, the CPU the pair used, and how the core was shared.
fn side_by_side(s: &mut String, runs: &[Value]) {
    let ratios = side_by_side_ratios(runs);
    if ratios.is_empty() {
        return;
    }
    let shares = runs
        .iter()
        .find(|r| r["phase"] == "side_by_side_setup")
        .and_then(|r| r["shares"].as_str());
    let how = match shares {
        Some("cgroups") => "each in a CPU control group of equal weight",
        _ => {
            "shared by the scheduler between threads (no CPU control groups here: this favours \
             (c), which has more busy threads; compare the CPU time per request)"
        }
    };
    let rounds: Vec<String> = ratios.iter().map(|(_, r)| format!("{r:.3}")).collect();
    let median_ratio = median_of(&ratios);
    let _ = writeln!(
        s,
        "Side by side ((c) and (e) loaded at once on the server core, {how}): audit log on / off, \
         (c) / (e): **{}** (rounds: {}; goal ≥ {GOAL_AUDIT_RATIO:.2}: {}); per second of each \
         one's own CPU time: {}.\n",
        fmt(median_ratio, 3),
        rounds.join(", "),
        verdict(median_ratio.map(|r| r >= GOAL_AUDIT_RATIO)),
        fmt(median_of(&audit_cpu_ratios(runs, "side_by_side")), 3),
    );
    let pair = median(&side_by_side_cpu(runs));
    if pair.is_some_and(|c| c < PAIR_SATURATED) {
        let _ = writeln!(
            s,
            "Warning: side by side, (c) and (e) used {} of the server core together (median), \
             less than {:.0}%: something else limited them, and the ratio understates the \
             difference.\n",
            fmt(pair, 2),
            PAIR_SATURATED * 100.0,
        );
    }
}

/// The Markdown summary of a run.
pub fn markdown(runs: &[Value]) -> String {
    let mut s = String::new();
    for skipped in runs.iter().filter(|r| r["phase"] == "skipped") {
        let _ = writeln!(
            s,
            "**{} not measured:** {}\n",
            skipped["target"].as_str().unwrap_or("?"),
            skipped["reason"].as_str().unwrap_or("no reason given"),
        );
    }
    throughput(&mut s, runs);
    side_by_side(&mut s, runs);
    fixed_rate(&mut s, runs);
    disturbed(&mut s, runs);
    s
}

/// Warns about runs during which other processes used the CPU. Side-by-side runs are left
/// out: each counts the other's proxy and load generator as "other".
fn disturbed(s: &mut String, runs: &[Value]) {
    let runs: Vec<String> = runs
        .iter()
        .filter(|v| v["phase"] != "side_by_side")
        .filter_map(|v| Some((v, other_cpu(v)?)))
        .filter(|(_, other)| *other > OTHER_BUSY)
        .map(|(v, other)| {
            format!(
                "{} {} round {} ({other:.2})",
                v["phase"].as_str().unwrap_or("?"),
                v["target"].as_str().unwrap_or("?"),
                fmt(num(v, "round"), 0)
            )
        })
        .collect();
    if !runs.is_empty() {
        let _ = writeln!(
            s,
            "Warning: something else used more than {OTHER_BUSY} of a core (other processes, or \
             kernel work charged to none of the measured ones) during: {}. Those figures are \
             disturbed; run again on an idle machine.\n",
            runs.join(", ")
        );
    }
}

/// The order in which the targets ran in `round` (letters a to f).
fn order(runs: &[Value], phase: &str, round: u64) -> String {
    runs.iter()
        .filter(|r| r["phase"] == phase && r["round"].as_u64() == Some(round))
        .filter_map(|r| TARGETS.iter().position(|(t, _)| r["target"] == *t))
        .map(|i| ["a", "b", "c", "d", "e", "f"][i])
        .collect::<Vec<_>>()
        .join(" ")
}

fn throughput(s: &mut String, runs: &[Value]) {
    let all_rounds = rounds(runs, "throughput");
    if all_rounds.is_empty() {
        return;
    }
    let (cb, ca) = (nginx_ratios(runs), direct_ratios(runs));
    let (cd, db) = (floor_ratios(runs), floor_nginx_ratios(runs));
    let _ = writeln!(
        s,
        "### Throughput, closed loop (`GET /`, \"Hello, World!\")\n"
    );
    let _ = writeln!(
        s,
        "| round | order | (a) direct rps | (b) nginx rps | (c) portcullis rps | (d) bare hyper rps | (c) / (b) | (c) / (a) | (c) / (d) | (d) / (b) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &round in &all_rounds {
        let rps = |t| of_round(runs, "throughput", t, round).and_then(|v| num(v, "rps"));
        let _ = writeln!(
            s,
            "| {round} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            order(runs, "throughput", round),
            fmt(rps("direct"), 0),
            fmt(rps("nginx"), 0),
            fmt(rps("portcullis"), 0),
            fmt(rps("hyper"), 0),
            fmt(find(&cb, round), 3),
            fmt(find(&ca, round), 3),
            fmt(find(&cd, round), 3),
            fmt(find(&db, round), 3),
        );
    }
    let med = |t| medians(&lines(runs, "throughput", t), "rps");
    let (ratio_b, ratio_a) = (median_of(&cb), median_of(&ca));
    let _ = writeln!(
        s,
        "| **median** | | {} | {} | {} | {} | **{}** | {} | {} | {} |\n",
        fmt(med("direct"), 0),
        fmt(med("nginx"), 0),
        fmt(med("portcullis"), 0),
        fmt(med("hyper"), 0),
        fmt(ratio_b, 3),
        fmt(ratio_a, 3),
        fmt(median_of(&cd), 3),
        fmt(median_of(&db), 3),
    );
    let _ = writeln!(
        s,
        "Median ratio (c) portcullis / (b) nginx: **{}** (goal ≥ {GOAL_NGINX_RATIO:.2}: {}). \
         Median ratio (c) portcullis / (a) direct: {}.\n",
        fmt(ratio_b, 3),
        verdict(ratio_b.map(|r| r >= GOAL_NGINX_RATIO)),
        fmt(ratio_a, 3),
    );
    let audit = audit_ratios(runs);
    if !audit.is_empty() {
        let rounds: Vec<String> = audit.iter().map(|(_, r)| format!("{r:.3}")).collect();
        let _ = writeln!(
            s,
            "Audit log on / off, (c) / (e): **{}** (rounds: {}; goal ≥ {GOAL_AUDIT_RATIO:.2}: {}); \
             (e) {} rps.\n",
            fmt(median_of(&audit), 3),
            rounds.join(", "),
            verdict(median_of(&audit).map(|r| r >= GOAL_AUDIT_RATIO)),
            fmt(medians(&lines(runs, "throughput", "noaudit"), "rps"), 0),
        );
        let (closed, fixed) = (
            audit_cpu_ratios(runs, "throughput"),
            audit_cpu_ratios(runs, "fixed_rate"),
        );
        let _ = writeln!(
            s,
            "The same per second of the server's own CPU time: closed loop {} ({} rounds), fixed \
             rate {} ({} rounds).\n",
            fmt(median_of(&closed), 3),
            closed.len(),
            fmt(median_of(&fixed), 3),
            fixed.len(),
        );
    }
    let anomaly = anomaly_ratios(runs);
    if !anomaly.is_empty() {
        let rounds: Vec<String> = anomaly.iter().map(|(_, r)| format!("{r:.3}")).collect();
        let _ = writeln!(
            s,
            "Anomaly detection on / off, (e) / (f): **{}** (rounds: {}; goal ≥ \
             {GOAL_ANOMALY_RATIO:.2}: {}); (f) {} rps.\n",
            fmt(median_of(&anomaly), 3),
            rounds.join(", "),
            verdict(median_of(&anomaly).map(|r| r >= GOAL_ANOMALY_RATIO)),
            fmt(medians(&lines(runs, "throughput", "noanomaly"), "rps"), 0),
        );
    }
    let _ = writeln!(
        s,
        "CPU share of one core used in the measured window (median over rounds):\n"
    );
    let _ = writeln!(
        s,
        "| target | proxy | upstream | load generator | other | p50 µs | p99 µs |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for (t, name) in TARGETS {
        let set = lines(runs, "throughput", t);
        if set.is_empty() {
            continue;
        }
        let other = median(&set.iter().filter_map(|v| other_cpu(v)).collect::<Vec<_>>());
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            fmt(medians(&set, "server_cpu"), 2),
            fmt(medians(&set, "upstream_cpu"), 2),
            fmt(medians(&set, "client_cpu"), 2),
            fmt(other, 2),
            fmt(medians(&set, "p50_us"), 1),
            fmt(medians(&set, "p99_us"), 1),
        );
    }
    s.push('\n');
    for (t, _) in &TARGETS[1..] {
        let idle: Vec<String> = lines(runs, "throughput", t)
            .iter()
            .filter(|v| num(v, "server_cpu").is_some_and(|c| c < PROXY_SATURATED))
            .map(|v| fmt(num(v, "round"), 0))
            .collect();
        if !idle.is_empty() {
            let _ = writeln!(
                s,
                "Warning: {t} used less than {:.0}% of its core in round(s) {}: it was not the \
                 bottleneck (the core of the upstream and the load generator, or another \
                 process, held it back), so that figure understates it.\n",
                PROXY_SATURATED * 100.0,
                idle.join(", ")
            );
        }
    }
}

fn fixed_rate(s: &mut String, runs: &[Value]) {
    let all_rounds = rounds(runs, "fixed_rate");
    if all_rounds.is_empty() {
        return;
    }
    let rate = medians(&lines(runs, "fixed_rate", "portcullis"), "target_rps").or_else(|| {
        runs.iter()
            .find(|r| r["phase"] == "fixed_rate")
            .and_then(|r| num(r, "target_rps"))
    });
    let _ = writeln!(
        s,
        "### Latency at {} req/s, open loop (median over rounds)\n",
        fmt(rate, 0)
    );
    let _ = writeln!(s, "| target | achieved rps | p50 µs | p99 µs | p99.9 µs |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (t, name) in TARGETS {
        let set = lines(runs, "fixed_rate", t);
        if set.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} |",
            fmt(medians(&set, "rps"), 0),
            fmt(medians(&set, "p50_us"), 1),
            fmt(medians(&set, "p99_us"), 1),
            fmt(medians(&set, "p999_us"), 1),
        );
    }
    let (added_c, added_b) = (
        added_p99_us(runs, "portcullis"),
        added_p99_us(runs, "nginx"),
    );
    let _ = writeln!(
        s,
        "\n| round | order | p99 µs (a) | p99 µs (b) | p99 µs (c) | added p99 µs, (b) − (a) | added p99 µs, (c) − (a) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
    for &round in &all_rounds {
        let p99 = |t| of_round(runs, "fixed_rate", t, round).and_then(|v| num(v, "p99_us"));
        let _ = writeln!(
            s,
            "| {round} | {} | {} | {} | {} | {} | {} |",
            order(runs, "fixed_rate", round),
            fmt(p99("direct"), 1),
            fmt(p99("nginx"), 1),
            fmt(p99("portcullis"), 1),
            fmt(find(&added_b, round), 1),
            fmt(find(&added_c, round), 1),
        );
    }
    let (med_c, med_b) = (median_of(&added_c), median_of(&added_b));
    let _ = writeln!(
        s,
        "| **median** | | | | | {} | **{}** |\n",
        fmt(med_b, 1),
        fmt(med_c, 1)
    );
    let _ = writeln!(
        s,
        "Added p99 of (c) portcullis over (a) direct at this load: **{} ms** (median of the \
         rounds' differences; goal ≤ {GOAL_ADDED_P99_MS} ms: {}). nginx adds {} ms.\n",
        fmt(med_c.map(|us| us / 1000.0), 3),
        verdict(med_c.map(|us| us / 1000.0 <= GOAL_ADDED_P99_MS)),
        fmt(med_b.map(|us| us / 1000.0), 3),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(phase: &str, target: &str, round: u64, rps: f64, p99: f64) -> Value {
        json!({"phase": phase, "target": target, "round": round, "rps": rps, "p99_us": p99,
               "server_cpu": 0.99, "upstream_cpu": 0.4, "client_cpu": 0.5})
    }

    /// A run of `target` that used `cpu` of the server core.
    fn run_cpu(phase: &str, target: &str, round: u64, rps: f64, cpu: f64) -> Value {
        let mut v = run(phase, target, round, rps, 1000.0);
        v["server_cpu"] = json!(cpu);
        v
    }

    fn sample() -> Vec<Value> {
        vec![
            run("throughput", "direct", 1, 40000.0, 900.0),
            run("throughput", "nginx", 1, 30000.0, 1500.0),
            run("throughput", "portcullis", 1, 24000.0, 2000.0),
            run("throughput", "nginx", 2, 20000.0, 1500.0),
            run("throughput", "portcullis", 2, 20000.0, 2000.0),
            run("throughput", "direct", 2, 40000.0, 900.0),
            run("fixed_rate", "direct", 1, 11000.0, 300.0),
            run("fixed_rate", "nginx", 1, 11000.0, 400.0),
            run("fixed_rate", "portcullis", 1, 11000.0, 450.0),
            run("fixed_rate", "nginx", 2, 11000.0, 420.0),
            run("fixed_rate", "portcullis", 2, 11000.0, 610.0),
            run("fixed_rate", "direct", 2, 11000.0, 310.0),
        ]
    }

    #[test]
    fn ratios_and_added_latency_pair_rounds() {
        let runs = sample();
        assert_eq!(nginx_ratios(&runs), vec![(1, 0.8), (2, 1.0)]);
        assert_eq!(direct_ratios(&runs), vec![(1, 0.6), (2, 0.5)]);
        assert_eq!(
            added_p99_us(&runs, "portcullis"),
            vec![(1, 150.0), (2, 300.0)]
        );
    }

    #[test]
    fn summary_states_goals_and_order() {
        let md = markdown(&sample());
        // Median of 0.8 and 1.0 is 0.9 < 0.95; median added p99 225 µs > 200 µs.
        assert!(md.contains("**0.900** (goal ≥ 0.95: **not met**)"), "{md}");
        assert!(md.contains("**0.225 ms**"), "{md}");
        assert!(md.contains("goal ≤ 0.2 ms: **not met**"), "{md}");
        assert!(md.contains("| 2 | b c a |"), "{md}");
        assert!(!md.contains("Warning"), "{md}");
    }

    #[test]
    fn floor_and_audit_ratios_are_reported() {
        let mut runs = sample();
        runs.extend([
            run("throughput", "hyper", 1, 30000.0, 1000.0),
            run("throughput", "noaudit", 1, 25000.0, 1900.0),
            run("throughput", "hyper", 2, 25000.0, 1000.0),
            run("throughput", "noaudit", 2, 20000.0, 1900.0),
        ]);
        assert_eq!(floor_ratios(&runs), vec![(1, 0.8), (2, 0.8)]);
        assert_eq!(floor_nginx_ratios(&runs), vec![(1, 1.0), (2, 1.25)]);
        assert_eq!(audit_ratios(&runs), vec![(1, 0.96), (2, 1.0)]);
        runs.extend([
            run("throughput", "noanomaly", 1, 25000.0, 1900.0),
            run("throughput", "noanomaly", 2, 25000.0, 1900.0),
        ]);
        assert_eq!(anomaly_ratios(&runs), vec![(1, 1.0), (2, 0.8)]);
        let md = markdown(&runs);
        assert!(
            md.contains("Anomaly detection on / off, (e) / (f): **0.900**"),
            "{md}"
        );
        assert!(
            md.contains("(c) / (e): **0.980** (rounds: 0.960, 1.000; goal ≥ 0.95: met)"),
            "{md}"
        );
        assert!(md.contains("| (e) portcullis, audit log off |"), "{md}");
    }

    #[test]
    fn side_by_side_rounds_are_reported_with_how_the_core_was_shared() {
        let with = |target, round, rps, cpu| run_cpu("side_by_side", target, round, rps, cpu);
        let mut runs = vec![
            json!({"phase": "side_by_side_setup", "shares": "cgroups"}),
            with("portcullis", 1, 9600.0, 0.5),
            with("noaudit", 1, 10000.0, 0.5),
            with("portcullis", 2, 10000.0, 0.49),
            with("noaudit", 2, 10000.0, 0.49),
        ];
        assert_eq!(side_by_side_ratios(&runs), vec![(1, 0.96), (2, 1.0)]);
        let md = markdown(&runs);
        assert!(
            md.contains("each in a CPU control group of equal weight"),
            "{md}"
        );
        assert!(
            md.contains("(c) / (e): **0.980** (rounds: 0.960, 1.000; goal ≥ 0.95: met)"),
            "{md}"
        );
        assert!(!md.contains("Warning"), "{md}");
        // Each side-by-side run sees the other half of the pair as "other": no warning for it.
        runs[1]["machine_cpu"] = json!(1.8);
        assert!(!markdown(&runs).contains("Warning"));
        // Without control groups, and with the pair far from using the core: both said.
        runs[0] = json!({"phase": "side_by_side_setup", "shares": "threads"});
        for r in &mut runs[1..] {
            r["server_cpu"] = json!(0.3);
        }
        let md = markdown(&runs);
        assert!(md.contains("no CPU control groups here"), "{md}");
        assert!(md.contains("used 0.60 of the server core together"), "{md}");
    }

    #[test]
    fn audit_cost_per_cpu_second_divides_out_the_cpu_each_run_got() {
        let with = run_cpu;
        let runs = vec![
            // Round 1: (c) got less CPU time than (e); per CPU second it does 0.96 of (e).
            with("throughput", "portcullis", 1, 19200.0, 0.8),
            with("throughput", "noaudit", 1, 25000.0, 1.0),
            // Round 2: no CPU time recorded for (e): no ratio.
            with("throughput", "portcullis", 2, 20000.0, 1.0),
            with("throughput", "noaudit", 2, 20000.0, 0.0),
            with("fixed_rate", "portcullis", 1, 10000.0, 0.5),
            with("fixed_rate", "noaudit", 1, 10000.0, 0.45),
        ];
        let closed = audit_cpu_ratios(&runs, "throughput");
        assert_eq!(closed.len(), 1);
        assert!((closed[0].1 - 0.96).abs() < 1e-9, "{closed:?}");
        let fixed = audit_cpu_ratios(&runs, "fixed_rate");
        assert!((fixed[0].1 - 0.9).abs() < 1e-9, "{fixed:?}");
        let md = markdown(&runs);
        assert!(
            md.contains("closed loop 0.960 (1 rounds), fixed rate 0.900 (1 rounds)"),
            "{md}"
        );
    }

    #[test]
    fn skipped_target_and_idle_proxy_are_reported() {
        let mut runs =
            vec![json!({"phase": "skipped", "target": "nginx", "reason": "not installed"})];
        runs.push(run("throughput", "direct", 1, 40000.0, 900.0));
        let mut c = run("throughput", "portcullis", 1, 24000.0, 2000.0);
        c["server_cpu"] = json!(0.5);
        runs.push(c);
        let md = markdown(&runs);
        assert!(md.contains("**nginx not measured:** not installed"), "{md}");
        assert!(md.contains("goal ≥ 0.95: not measured"), "{md}");
        assert!(
            md.contains("Warning: portcullis used less than 90%"),
            "{md}"
        );
    }

    #[test]
    fn other_processes_are_reported() {
        let mut runs = sample();
        assert_eq!(other_cpu(&runs[1]), None);
        runs[1]["machine_cpu"] = json!(1.89);
        runs[2]["machine_cpu"] = json!(2.0);
        assert!((other_cpu(&runs[1]).unwrap_or(0.0) - 0.0).abs() < 1e-9);
        assert!((other_cpu(&runs[2]).unwrap_or(0.0) - 0.11).abs() < 1e-9);
        assert!(!markdown(&runs).contains("something else"));
        runs[2]["machine_cpu"] = json!(2.3);
        let md = markdown(&runs);
        assert!(
            md.contains("during: throughput portcullis round 1 (0.41)"),
            "{md}"
        );
    }
}
