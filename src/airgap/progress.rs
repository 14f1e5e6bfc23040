//! The progress bars of `prefetch` and `export`, on stderr. indicatif hides them when stderr is
//! not a terminal (logs, CI, tests), so the commands' output stays plain there.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

const IMAGE_TEMPLATE: &str = "{msg:40!} {bar:30} {binary_bytes:>10}/{binary_total_bytes:<10} {elapsed:>4}";
const TOTAL_TEMPLATE: &str =
    "{msg:40!} {bar:30} {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}";

/// One bar per image and a total below them, all in bytes.
pub struct Bars {
    multi: MultiProgress,
    pub total: ProgressBar,
}

impl Bars {
    pub fn new(label: &str) -> Bars {
        let multi = MultiProgress::new();
        let total = multi.add(bytes_bar(0, TOTAL_TEMPLATE));
        total.set_message(label.to_owned());
        Bars { multi, total }
    }

    /// A bar for one image, above the total; its length adds to the total's.
    pub fn image(&self, name: &str, bytes: u64) -> ProgressBar {
        let bar = self.multi.insert_before(&self.total, bytes_bar(bytes, IMAGE_TEMPLATE));
        bar.set_message(name.to_owned());
        self.total.inc_length(bytes);
        bar
    }
}

/// A single bar in bytes, for `export`.
pub fn single(label: &str, bytes: u64) -> ProgressBar {
    let bar = bytes_bar(bytes, TOTAL_TEMPLATE);
    bar.set_message(label.to_owned());
    bar
}

fn bytes_bar(len: u64, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style)
}
