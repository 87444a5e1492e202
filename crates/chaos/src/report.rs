//! What a run leaves and prints: `run.json` ([`RunInfo`]), `summary.json` ([`Summary`]),
//! `explanation.txt`, and the human summary on stderr; plus how reports combine into a verdict.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::check::{Report, Verdict};
use crate::options::RunOptions;
use crate::recorder::Tally;
use crate::shards::ShardTally;

/// `run.json`: what was run, to replay it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// The resolved options (seed included).
    pub options: RunOptions,
    /// When the run started (UTC, `YYYY-MM-DDTHH:MM:SSZ`).
    pub started: String,
    /// Wall-clock time of the history's time zero (Unix milliseconds).
    #[serde(default)]
    pub started_unix_ms: u64,
    /// The commit of the working directory's repository, when known.
    pub commit: Option<String>,
    /// The dolmen-chaos version.
    pub chaos_version: String,
    /// Bank parameters the checker needs.
    pub bank_accounts: u32,
    /// The bank's invariant total.
    pub bank_total: i64,
    /// The command that repeats this run.
    pub replay: String,
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `pass`, `violation` or `unknown` (`unknown` fails too).
    pub result: &'static str,
    /// The seed.
    pub seed: u64,
    /// Operations and faults counted.
    pub tally: Tally,
    /// A sharded run's figures: operations by range, transactions reaching one range or
    /// several (absent when not sharded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardTally>,
    /// Every check: the history checkers and the runner's own (replica agreement, recovery,
    /// unexpected node exits).
    pub reports: Vec<Report>,
    /// Nodes that did not exit 0 after the final SIGTERM (reported, not failing).
    pub warnings: Vec<String>,
    /// Wall time of the whole run, seconds.
    pub elapsed_secs: f64,
}

/// `pass` when every report is Ok, else `violation` when any is a violation, else `unknown`.
pub(crate) fn verdict_of(reports: &[Report]) -> &'static str {
    if reports
        .iter()
        .any(|r| matches!(r.verdict, Verdict::Violation))
    {
        "violation"
    } else if reports.iter().all(Report::passed) {
        "pass"
    } else {
        "unknown"
    }
}

pub(crate) fn runner_report(
    checker: &'static str,
    verdict: Verdict,
    checked: usize,
    explanation: String,
) -> Report {
    Report {
        checker,
        verdict,
        checked: checked as u64,
        explanation,
    }
}

pub(crate) fn explanation(summary: &Summary) -> String {
    let mut s = format!("result: {} (seed {})\n\n", summary.result, summary.seed);
    for r in summary.reports.iter().filter(|r| !r.passed()) {
        let _ = writeln!(
            s,
            "==== {} : {:?} ({} checked) ====\n{}\n",
            r.checker, r.verdict, r.checked, r.explanation
        );
    }
    s
}

pub(crate) fn print_tally(t: &Tally) {
    eprintln!("operations:");
    for (w, outcomes) in &t.operations {
        let parts: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o}={n}")).collect();
        eprintln!("  {w:<14} {}", parts.join(" "));
    }
    let faults: Vec<String> = t.faults.iter().map(|(k, n)| format!("{k}={n}")).collect();
    eprintln!(
        "faults: {}",
        if faults.is_empty() {
            "none".to_owned()
        } else {
            faults.join(" ")
        }
    );
}

pub(crate) fn print_shards(t: &ShardTally) {
    eprintln!("shards (split keys {}):", t.split_keys.join(","));
    for line in t.lines() {
        eprintln!("  {line}");
    }
}

pub(crate) fn print_report(r: &Report) {
    let first = r.explanation.lines().next().unwrap_or("");
    eprintln!(
        "  {:<18} {:<9} {:>8} checked  {first}",
        r.checker,
        format!("{:?}", r.verdict),
        r.checked
    );
}

pub(crate) fn print_summary(s: &Summary, out: &Path, replay: &str) {
    eprintln!(
        "---- dolmen-chaos summary (seed {}, {:.0}s) ----",
        s.seed, s.elapsed_secs
    );
    print_tally(&s.tally);
    if let Some(shards) = &s.shards {
        print_shards(shards);
    }
    eprintln!("checks:");
    for r in &s.reports {
        print_report(r);
    }
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    match s.result {
        "pass" => eprintln!(
            "result: PASS\nhistory and summary kept in {}",
            out.display()
        ),
        other => {
            eprintln!(
                "result: FAIL ({other}{})",
                if other == "unknown" {
                    ": a check could not decide, which counts as a failure"
                } else {
                    ""
                }
            );
            eprintln!(
                "run folder (history, logs, configs, data): {}",
                out.display()
            );
            eprintln!("explanation: {}", out.join("explanation.txt").display());
            eprintln!("replay: {replay}");
            // Last, so that a log that keeps only its tail (a CI report) still says why.
            eprintln!("{}", explanation_head(s));
        }
    }
}

/// Lines of the explanation printed at the end of a failing run's summary.
const HEAD_LINES: usize = 16;
/// Characters kept of each of them.
const HEAD_LINE_CHARS: usize = 400;

/// The start of [`explanation`], at most [`HEAD_LINES`] lines of at most [`HEAD_LINE_CHARS`]
/// characters each (the whole text is in `explanation.txt`).
fn explanation_head(s: &Summary) -> String {
    let text = explanation(s);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut head: Vec<String> = lines
        .iter()
        .take(HEAD_LINES)
        .map(|line| match line.char_indices().nth(HEAD_LINE_CHARS) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => (*line).to_owned(),
        })
        .collect();
    if lines.len() > HEAD_LINES {
        head.push(format!(
            "… {} more lines in explanation.txt",
            lines.len() - HEAD_LINES
        ));
    }
    head.join("\n")
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialize")?;
    std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
}

/// Reads `run.json` of a run folder.
///
/// # Errors
/// When it is missing or not a run description.
pub fn read_info(dir: &Path) -> anyhow::Result<RunInfo> {
    let path = dir.join("run.json");
    let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a run description", path.display()))
}

pub(crate) fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (Howard Hinnant's civil-from-days).
pub(crate) fn utc_stamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_stamp(1_795_300_245), "2026-11-21T22:30:45Z");
    }

    #[test]
    fn a_failing_summary_ends_with_the_head_of_its_explanation() {
        let long: Vec<String> = (0..40)
            .map(|i| format!("line {i} {}", "x".repeat(500)))
            .collect();
        let summary = Summary {
            result: "violation",
            seed: 7,
            tally: Tally::default(),
            shards: None,
            reports: vec![
                runner_report("passing", Verdict::Ok, 1, "fine".into()),
                runner_report("register", Verdict::Violation, 9, long.join("\n")),
            ],
            warnings: Vec::new(),
            elapsed_secs: 1.0,
        };
        let head = explanation_head(&summary);
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(lines.len(), HEAD_LINES + 1, "{head}");
        assert_eq!(lines[0], "result: violation (seed 7)");
        assert!(lines[1].starts_with("==== register : Violation (9 checked)"));
        assert!(lines[2].starts_with("line 0 xxx"));
        assert!(lines[2].ends_with('…') && lines[2].chars().count() == HEAD_LINE_CHARS + 1);
        assert!(!head.contains("passing"), "{head}");
        assert_eq!(lines[HEAD_LINES], "… 26 more lines in explanation.txt");
    }

    #[test]
    fn verdicts_combine() {
        let r = |v| runner_report("x", v, 1, String::new());
        assert_eq!(verdict_of(&[r(Verdict::Ok), r(Verdict::Ok)]), "pass");
        assert_eq!(
            verdict_of(&[r(Verdict::Ok), r(Verdict::Unknown)]),
            "unknown"
        );
        assert_eq!(
            verdict_of(&[r(Verdict::Unknown), r(Verdict::Violation)]),
            "violation"
        );
    }
}
