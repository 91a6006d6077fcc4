//! `bench-report [--gateway] FILE`: the Markdown summary of the JSON lines a `bench/verify.sh` run
//! (or, with `--gateway`, a `bench/gateway.sh` run) wrote.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let gateway = args.first().is_some_and(|a| a == "--gateway");
    if gateway {
        args.remove(0);
    }
    let [path] = args.as_slice() else {
        eprintln!("usage: bench-report [--gateway] RESULTS.jsonl");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench-report: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut runs = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str(line) {
            Ok(v) => runs.push(v),
            Err(e) => {
                eprintln!("bench-report: {path}:{}: {e}", i + 1);
                return ExitCode::FAILURE;
            }
        }
    }
    if gateway {
        print!("{}", portcullis_bench::gateway_report::markdown(&runs));
    } else {
        print!("{}", portcullis_bench::report::markdown(&runs));
    }
    ExitCode::SUCCESS
}
