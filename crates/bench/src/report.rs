//! Turns the JSON lines of a `bench/verify.sh` run into a Markdown summary (`bench/gateway.sh`:
//! see [`crate::gateway_report`]).
//!
//! Lines carry a `phase`: `throughput` and `fixed_rate` (with `target` = `baseline` or
//! `candidate` and a `round`), `seed` (the `bench-seed` output) and `miss` (load against the
//! server with its cache disabled; `mode` = `max` or `fixed_rate`).
use std::fmt::Write as _;

use serde_json::Value;

/// Share of the baseline's throughput the candidate must reach.
pub const GOAL_RATIO: f64 = 0.90;

/// The median of `values` (mean of the middle two for an even count), `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

pub(crate) fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

pub(crate) fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |x| format!("{x:.decimals$}"))
}

fn lines_of<'a>(runs: &'a [Value], phase: &str, target: Option<&str>) -> Vec<&'a Value> {
    runs.iter()
        .filter(|r| r["phase"] == phase && target.is_none_or(|t| r["target"] == t))
        .collect()
}

pub(crate) fn medians(runs: &[&Value], key: &str) -> Option<f64> {
    median(&runs.iter().filter_map(|r| num(r, key)).collect::<Vec<_>>())
}

/// The throughput ratio of each round (candidate rps / baseline rps), in round order.
pub fn ratios(runs: &[Value]) -> Vec<(u64, f64)> {
    let base = lines_of(runs, "throughput", Some("baseline"));
    let cand = lines_of(runs, "throughput", Some("candidate"));
    let mut out = Vec::new();
    for b in &base {
        let round = b["round"].as_f64().unwrap_or(0.0) as u64;
        let c = cand
            .iter()
            .find(|c| c["round"].as_f64() == Some(round as f64));
        let brps = num(b, "rps").filter(|x| *x > 0.0);
        if let (Some(brps), Some(crps)) = (brps, c.and_then(|c| num(c, "rps"))) {
            out.push((round, crps / brps));
        }
    }
    out
}

/// The Markdown summary of a run.
pub fn markdown(runs: &[Value]) -> String {
    let mut s = String::new();
    throughput(&mut s, runs);
    fixed_rate(&mut s, runs);
    cache_miss(&mut s, runs);
    s
}

fn throughput(s: &mut String, runs: &[Value]) {
    let base = lines_of(runs, "throughput", Some("baseline"));
    let cand = lines_of(runs, "throughput", Some("candidate"));
    if base.is_empty() && cand.is_empty() {
        return;
    }
    let ratios = ratios(runs);
    let _ = writeln!(s, "### Throughput, closed loop (`POST /v1/verify`)\n");
    let _ = writeln!(
        s,
        "| round | baseline rps | candidate rps | ratio | baseline server CPU | candidate server CPU | load-generator CPU (b / c) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for b in &base {
        let round = b["round"].as_f64().unwrap_or(0.0);
        let c = cand.iter().find(|c| c["round"].as_f64() == Some(round));
        let ratio = ratios
            .iter()
            .find(|(r, _)| *r as f64 == round)
            .map(|(_, x)| *x);
        let _ = writeln!(
            s,
            "| {round} | {} | {} | {} | {} | {} | {} / {} |",
            fmt(num(b, "rps"), 0),
            fmt(c.and_then(|c| num(c, "rps")), 0),
            fmt(ratio, 3),
            fmt(num(b, "server_cpu"), 2),
            fmt(c.and_then(|c| num(c, "server_cpu")), 2),
            fmt(num(b, "client_cpu"), 2),
            fmt(c.and_then(|c| num(c, "client_cpu")), 2),
        );
    }
    let median_ratio = median(&ratios.iter().map(|(_, r)| *r).collect::<Vec<_>>());
    let _ = writeln!(
        s,
        "| **median** | {} | {} | **{}** | | | |\n",
        fmt(medians(&base, "rps"), 0),
        fmt(medians(&cand, "rps"), 0),
        fmt(median_ratio, 3),
    );
    let verdict = match median_ratio {
        Some(r) if r >= GOAL_RATIO => "met",
        Some(_) => "**not met**",
        None => "not measured",
    };
    let _ = writeln!(
        s,
        "Median ratio candidate / baseline: **{}** (goal ≥ {GOAL_RATIO:.2}: {verdict}).\n",
        fmt(median_ratio, 3)
    );
    for w in saturation_warnings(&base, &cand) {
        let _ = writeln!(s, "Warning: {w}\n");
    }
    let _ = writeln!(s, "Latency under that load (median over rounds):\n");
    let _ = writeln!(s, "| target | p50 µs | p99 µs | p99.9 µs |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for (name, set) in [
        ("baseline (axum hello)", &base),
        ("candidate (portcullis)", &cand),
    ] {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} |",
            fmt(medians(set, "p50_us"), 1),
            fmt(medians(set, "p99_us"), 1),
            fmt(medians(set, "p999_us"), 1),
        );
    }
    s.push('\n');
}

/// Below this share of its core a server was not the bottleneck of a closed-loop run.
const SERVER_SATURATED: f64 = 0.90;
/// Above this share of its core the load generator may have been the bottleneck.
const CLIENT_SATURATED: f64 = 0.90;

/// Why a closed-loop run may not have measured the server's capacity.
fn saturation_warnings(base: &[&Value], cand: &[&Value]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, set) in [("baseline", base), ("candidate", cand)] {
        let rounds = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
            set.iter()
                .filter(|v| pred(v))
                .map(|v| fmt(num(v, "round"), 0))
                .collect()
        };
        let idle = rounds(&|v| num(v, "server_cpu").is_some_and(|c| c < SERVER_SATURATED));
        if !idle.is_empty() {
            out.push(format!(
                "the {name} server used less than {:.0}% of its core in round(s) {}: it was \
                 not saturated (another process or the load generator held it back).",
                SERVER_SATURATED * 100.0,
                idle.join(", ")
            ));
        }
        let busy = rounds(&|v| num(v, "client_cpu").is_some_and(|c| c > CLIENT_SATURATED));
        if !busy.is_empty() {
            out.push(format!(
                "the load generator used more than {:.0}% of its core against the {name} in \
                 round(s) {}: that figure may be the load generator's limit.",
                CLIENT_SATURATED * 100.0,
                busy.join(", ")
            ));
        }
    }
    out
}

fn fixed_rate(s: &mut String, runs: &[Value]) {
    let base = lines_of(runs, "fixed_rate", Some("baseline"));
    let cand = lines_of(runs, "fixed_rate", Some("candidate"));
    if base.is_empty() && cand.is_empty() {
        return;
    }
    let rate = medians(&cand, "target_rps").or_else(|| medians(&base, "target_rps"));
    let _ = writeln!(
        s,
        "### Latency at a fixed rate of {} req/s, open loop (median over rounds)\n",
        fmt(rate, 0)
    );
    let _ = writeln!(s, "| target | achieved rps | p50 µs | p99 µs | p99.9 µs |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (name, set) in [
        ("baseline (axum hello)", &base),
        ("candidate (portcullis)", &cand),
    ] {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} |",
            fmt(medians(set, "rps"), 0),
            fmt(medians(set, "p50_us"), 1),
            fmt(medians(set, "p99_us"), 1),
            fmt(medians(set, "p999_us"), 1),
        );
    }
    s.push('\n');
}

fn cache_miss(s: &mut String, runs: &[Value]) {
    let seed = lines_of(runs, "seed", None);
    let miss = lines_of(runs, "miss", None);
    if seed.is_empty() && miss.is_empty() {
        return;
    }
    let keys = seed.first().and_then(|v| num(v, "keys"));
    let _ = writeln!(
        s,
        "### Cache miss: {} keys in SQLite, server cache disabled\n",
        fmt(keys, 0)
    );
    let _ = writeln!(s, "| measure | rps | p50 µs | p99 µs | p99.9 µs |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for v in &seed {
        let f = &v["find_key"];
        let _ = writeln!(
            s,
            "| `Store::find_key` in process ({} lookups) | – | {} | {} | {} |",
            fmt(num(f, "lookups"), 0),
            fmt(num(f, "p50_us"), 1),
            fmt(num(f, "p99_us"), 1),
            fmt(num(f, "p999_us"), 1),
        );
    }
    for v in &miss {
        let what = match v["mode"].as_str() {
            Some("fixed_rate") => format!(
                "`POST /v1/verify` at {} req/s",
                fmt(num(v, "target_rps"), 0)
            ),
            _ => "`POST /v1/verify`, closed loop".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {} | {} |",
            fmt(num(v, "rps"), 0),
            fmt(num(v, "p50_us"), 1),
            fmt(num(v, "p99_us"), 1),
            fmt(num(v, "p999_us"), 1),
        );
    }
    for v in &seed {
        let _ = writeln!(
            s,
            "\nSeeding took {} s ({} keys/s); database file {} MB.",
            fmt(num(v, "seed_seconds"), 1),
            fmt(num(v, "keys_per_second"), 0),
            fmt(num(v, "db_bytes").map(|b| b / 1e6), 0),
        );
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratios_pair_rounds() {
        let runs = vec![
            json!({"phase":"throughput","target":"baseline","round":1,"rps":100.0}),
            json!({"phase":"throughput","target":"candidate","round":1,"rps":90.0}),
            json!({"phase":"throughput","target":"candidate","round":2,"rps":50.0}),
            json!({"phase":"throughput","target":"baseline","round":2,"rps":100.0}),
        ];
        assert_eq!(ratios(&runs), vec![(1, 0.9), (2, 0.5)]);
        let md = markdown(&runs);
        assert!(md.contains("**0.700**"), "{md}");
        assert!(md.contains("not met"), "{md}");
        assert!(!md.contains("Warning"), "{md}");
    }

    #[test]
    fn warns_when_a_run_did_not_saturate_the_server() {
        let runs = vec![
            json!({"phase":"throughput","target":"baseline","round":1,"rps":100.0,"server_cpu":0.99,"client_cpu":0.97}),
            json!({"phase":"throughput","target":"candidate","round":1,"rps":90.0,"server_cpu":0.5,"client_cpu":0.4}),
        ];
        let md = markdown(&runs);
        assert!(
            md.contains("Warning: the candidate server used less than 90%"),
            "{md}"
        );
        assert!(md.contains("Warning: the load generator used more than 90% of its core against the baseline in round(s) 1"), "{md}");
    }

    #[test]
    fn miss_section_lists_lookups_and_load() {
        let runs = vec![
            json!({"phase":"seed","keys":1000000,"find_key":{"lookups":20000,"p50_us":40.0,"p99_us":90.0}}),
            json!({"phase":"miss","mode":"max","rps":9000.0,"p50_us":300.0,"p99_us":900.0}),
        ];
        let md = markdown(&runs);
        assert!(md.contains("1000000 keys"), "{md}");
        assert!(md.contains("| 9000 | 300.0 | 900.0 |"), "{md}");
    }
}
