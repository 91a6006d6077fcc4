//! `bench-report FILE`: the Markdown summary of the JSON lines a `bench/verify.sh` run wrote.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: bench-report RESULTS.jsonl");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
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
    print!("{}", portcullis_bench::report::markdown(&runs));
    ExitCode::SUCCESS
}
