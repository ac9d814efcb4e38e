//! Progress bars for the backup engine on a terminal (indicatif), through rustic_core's
//! `ProgressBars` hook. Only when both stdout and stderr are terminals and no `--json` was
//! asked for: scheduled runs, pipes, logs and JSON output stay quiet. Bars draw on stderr.

use caretaker_backup::{Progress, ProgressBars, ProgressType, ResticRepository, RusticProgress};
use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Whether this process shows progress bars (`json`: the command prints JSON).
pub fn wanted(json: bool) -> bool {
    !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// The repository with terminal progress bars when [`wanted`], unchanged otherwise.
pub fn attach(repo: ResticRepository, json: bool) -> ResticRepository {
    if wanted(json) {
        repo.with_progress(Arc::new(TerminalBars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }))
    } else {
        repo
    }
}

#[derive(Debug)]
struct TerminalBars {
    multi: MultiProgress,
}

impl ProgressBars for TerminalBars {
    fn progress(&self, kind: ProgressType, prefix: &str) -> Progress {
        let template = match kind {
            ProgressType::Spinner => "{prefix:32} {spinner} {elapsed}",
            ProgressType::Counter => "{prefix:32} [{elapsed_precise}] {wide_bar} {pos:>8}/{len:8} {eta}",
            ProgressType::Bytes => {
                "{prefix:32} [{elapsed_precise}] {wide_bar} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta}"
            }
        };
        let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = match kind {
            ProgressType::Spinner => ProgressBar::new_spinner(),
            _ => ProgressBar::new(0),
        };
        let bar = self.multi.add(bar.with_style(style).with_prefix(prefix.trim_end_matches('.').to_string()));
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress::new(TerminalBar { bar, bytes: matches!(kind, ProgressType::Bytes), multi: self.multi.clone() })
    }
}

#[derive(Debug)]
struct TerminalBar {
    bar: ProgressBar,
    bytes: bool,
    multi: MultiProgress,
}

impl RusticProgress for TerminalBar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.bar.set_length(len);
    }
    fn set_title(&self, title: &str) {
        self.bar.set_prefix(title.trim_end_matches('.').to_string());
    }
    fn inc(&self, inc: u64) {
        self.bar.inc(inc);
    }
    /// Every bar vanishes when done (the engine has many short steps: listing snapshots,
    /// reading the index); a step that moved data leaves one line saying how much and how long.
    fn finish(&self) {
        self.bar.finish_and_clear();
        let moved = self.bar.position();
        if self.bytes && moved > 0 {
            let _ = self.multi.println(format!(
                "{}: {} in {}",
                self.bar.prefix(),
                HumanBytes(moved),
                HumanDuration(self.bar.elapsed())
            ));
        }
    }
}
