//! The one printed table, and the number formats it uses.

use std::time::Duration;

pub const HEADER: [&str; 7] = [
    "section",
    "case",
    "metric",
    "measured",
    "vs direct",
    "target",
    "result",
];

/// One line of the table; cells in `HEADER`'s order.
pub struct Row(pub [String; 7]);

impl Row {
    pub fn new(section: &str, case: &str, metric: &str, measured: String) -> Row {
        Row([
            section.to_string(),
            case.to_string(),
            metric.to_string(),
            measured,
            String::new(),
            String::new(),
            String::new(),
        ])
    }

    pub fn vs_direct(mut self, text: String) -> Row {
        self.0[4] = text;
        self
    }

    pub fn target(mut self, target: String, met: bool, detail: String) -> Row {
        self.0[5] = target;
        self.0[6] = format!("{} {detail}", if met { "met" } else { "missed" })
            .trim_end()
            .to_string();
        self
    }

    pub fn result(mut self, text: String) -> Row {
        self.0[6] = text;
        self
    }
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Left-aligned columns two spaces apart, a rule under the header, a blank line between sections.
pub fn render(rows: &[Row]) -> String {
    let header = Row(HEADER.map(String::from));
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| width(&r.0[i]))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &Row| {
        let cells: Vec<String> = row
            .0
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - width(cell))))
            .collect();
        let mut text = cells.join("  ").trim_end().to_string();
        text.push('\n');
        text
    };
    let mut out = line(&header);
    let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    let mut section = None;
    for row in rows {
        if section.is_some_and(|s: &str| s != row.0[0]) {
            out.push('\n');
        }
        section = Some(row.0[0].as_str());
        out.push_str(&line(row));
    }
    out
}

/// `87 µs`, `1,234 µs`, `12.3 ms`, `4.21 s`.
pub fn duration(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 10_000 {
        format!("{} µs", thousands(micros as u64))
    } else if micros < 10_000_000 {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `9,120/s`.
pub fn rate(per_second: f64) -> String {
    format!("{}/s", thousands(per_second.round() as u64))
}

/// `812 B`, `9,876 B`, `12.3 KiB`, `45.6 MiB`.
pub fn bytes(n: f64) -> String {
    if n.abs() < 10_240.0 {
        let sign = if n < 0.0 { "-" } else { "" };
        format!("{sign}{} B", thousands(n.abs().round() as u64))
    } else if n.abs() < 10.0 * 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    }
}

/// `×1.47`.
pub fn ratio(ours: f64, direct: f64) -> String {
    if direct > 0.0 {
        format!("×{:.2}", ours / direct)
    } else {
        "–".to_string()
    }
}

/// Pads `text` on the left to `width` characters (for sub-columns inside a cell).
pub fn pad(text: &str, width: usize) -> String {
    format!(
        "{}{text}",
        " ".repeat(width.saturating_sub(self::width(text)))
    )
}
