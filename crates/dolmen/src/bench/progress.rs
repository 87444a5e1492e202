//! The live progress of one run on stderr, once a second: an `indicatif` bar (time or ops done,
//! and the last second's ops/s) on a terminal, a plain line per second otherwise (logs, CI).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a run's end is known, for the bar's length.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// A hard stop after this long.
    Duration(Duration),
    /// This many operations in total.
    Ops(u64),
}

/// The display of one run; stopped by [`Progress::finish`] (or when dropped).
pub struct Progress {
    ticker: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts reporting the run called `label`; `done` counts finished operations.
    pub fn start(label: String, goal: Goal, done: Arc<AtomicU64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let (len, unit) = match goal {
                Goal::Duration(d) => (d.as_secs().max(1), "s"),
                Goal::Ops(n) => (n, " ops"),
            };
            let template = format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}}{unit}  {{msg}}");
            let style = ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
                .with_style(style)
                .with_prefix(label.clone());
            bar.set_message("starting");
            bar
        });
        let ticker = tokio::spawn(tick(label, goal, done, bar.clone()));
        Progress { ticker, bar }
    }

    /// Stops the display and clears the bar.
    pub fn finish(self) {
        // `Drop` does the work.
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

async fn tick(label: String, goal: Goal, done: Arc<AtomicU64>, bar: Option<ProgressBar>) {
    let start = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    let mut last = 0;
    loop {
        interval.tick().await;
        let now = done.load(Ordering::Relaxed);
        let rate = now - last;
        last = now;
        let secs = start.elapsed().as_secs();
        match &bar {
            Some(bar) => {
                bar.set_position(match goal {
                    Goal::Duration(_) => secs,
                    Goal::Ops(_) => now,
                });
                bar.set_message(format!("{rate} ops/s"));
            }
            None => eprintln!("{label}: {rate:>8} ops/s at {secs:>4}s"),
        }
    }
}
