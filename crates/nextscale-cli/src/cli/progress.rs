//! indicatif progress bars in one style.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` steps with a message, position and ETA.
pub fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// Prints a line above the bar, or to stderr when the bar is hidden (output not a terminal,
/// e.g. a log file), so training logs keep their notes.
pub fn note(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Every 50 steps, when the bar is hidden, prints the step, the bar's message, the
/// elapsed time and the ETA to stderr.
pub fn log_step(bar: &ProgressBar) {
    let pos = bar.position();
    if bar.is_hidden() && pos.is_multiple_of(50) {
        eprintln!(
            "{}/{} {} elapsed {:.0}s eta {:.0}s",
            pos,
            bar.length().unwrap_or(0),
            bar.message(),
            bar.elapsed().as_secs_f64(),
            bar.eta().as_secs_f64()
        );
    }
}
