//! `--svg FILE`: a self-contained SVG chart, written by hand.
//!
//! Left: brook's latency percentile curves, one line per scenario, on the
//! usual "1 − p" log scale (the x axis reaches 90, 99, 99.9, 99.99 % at equal
//! steps, then the maximum) with latency on a log scale. Right: messages per
//! second in total per scenario, brook next to the relay, on a log scale.

use std::fmt::Write;

use crate::report::{self, Row};
use crate::target::TargetKind;

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 600.0;
const TOP: f64 = 80.0;
const BOTTOM: f64 = 470.0;
/// The latency panel's plot area, left to right.
const CURVES: (f64, f64) = (90.0, 560.0);
/// The throughput panel: where scenario names end, and the bars' extent,
/// which leaves room on the right for the longest value label.
const BARS: (f64, f64) = (760.0, 1020.0);
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];
const RELAY_COLOUR: &str = "#9e9e9e";
/// `k` = −log10(1 − p) runs from 0 (p = 0) to 4 (p = 99.99 %); the maximum
/// is drawn at 5.
const K_MAX: f64 = 5.0;

pub fn chart(rows: &[Row], title: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="32" text-anchor="middle" font-size="18" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    latency_panel(&mut svg, rows);
    throughput_panel(&mut svg, rows);
    svg.push_str("</svg>\n");
    svg
}

// ---- Latency percentiles ----

fn latency_panel(svg: &mut String, rows: &[Row]) {
    let curves: Vec<&Row> = rows
        .iter()
        .filter(|row| row.target == TargetKind::Brook && !row.latency.is_empty())
        .collect();
    let (left, right) = CURVES;
    panel_title(svg, (left + right) / 2.0, "brook latency by percentile");
    let lowest = curves.iter().map(|row| row.latency.quantile(0.0)).min();
    let highest = curves.iter().map(|row| row.latency.max()).max();
    let (low_decade, high_decade) = decades(lowest.unwrap_or(1_000), highest.unwrap_or(1_000_000));
    let x = |k: f64| left + (right - left) * k / K_MAX;
    let y = |ns: u64| {
        let position =
            ((ns.max(1) as f64).log10() - low_decade as f64) / (high_decade - low_decade) as f64;
        BOTTOM - (BOTTOM - TOP) * position
    };

    for decade in low_decade..=high_decade {
        let at = y(10u64.pow(decade as u32));
        grid_line(svg, (left, at), (right, at));
        label(svg, left - 8.0, at + 4.0, "end", &decade_label(decade));
    }
    for (k, name) in ["0", "90", "99", "99.9", "99.99", "100"].iter().enumerate() {
        let at = x(k as f64);
        grid_line(svg, (at, TOP), (at, BOTTOM));
        label(svg, at, BOTTOM + 18.0, "middle", name);
    }
    axis_titles(svg, (left, right), "percentile (%)", "latency (log scale)");

    for (index, row) in curves.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        let mut points = String::new();
        for step in 0..=400 {
            let k = step as f64 / 100.0;
            let quantile = 1.0 - 10f64.powf(-k);
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x(k),
                y(row.latency.quantile(quantile))
            );
        }
        let _ = write!(points, "{:.1},{:.1}", x(K_MAX), y(row.latency.max()));
        let _ = writeln!(
            svg,
            r#"<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>"#
        );
        legend_entry(svg, index, colour, &row.label);
    }
}

/// The legend sits under the latency panel, three entries to a line.
fn legend_entry(svg: &mut String, index: usize, colour: &str, text: &str) {
    let (left, right) = CURVES;
    let x = left + (right - left) / 3.0 * (index % 3) as f64;
    let y = BOTTOM + 70.0 + 20.0 * (index / 3) as f64;
    let _ = writeln!(
        svg,
        r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/>"#,
        y - 4.0,
        x + 22.0,
        y - 4.0
    );
    label(svg, x + 28.0, y, "start", text);
}

/// The decades (powers of ten, in nanoseconds) that span `low..=high`.
fn decades(low: u64, high: u64) -> (i32, i32) {
    let low = (low.max(1) as f64).log10().floor() as i32;
    let high = (high.max(1) as f64).log10().ceil() as i32;
    (low, high.max(low + 1))
}

/// `10^decade` nanoseconds as `1µs`, `10µs`, `100µs`, `1ms` ...
fn decade_label(decade: i32) -> String {
    with_unit(decade, &["ns", "µs", "ms", "s"])
}

/// `10^decade` with a unit for each power of a thousand: with
/// `["", "k", "M"]`, `1`, `10`, `100`, `1k`, `10k` ...
fn with_unit(decade: i32, units: &[&str]) -> String {
    let unit = (decade / 3).min(units.len() as i32 - 1);
    let number = 10u64.pow((decade - unit * 3) as u32);
    format!("{number}{}", units[unit as usize])
}

// ---- Throughput bars ----

fn throughput_panel(svg: &mut String, rows: &[Row]) {
    let bars: Vec<(&Row, f64)> = rows
        .iter()
        .filter_map(|row| Some((row, row.throughput?.total)))
        .filter(|(_, total)| *total > 0.0)
        .collect();
    let (left, right) = BARS;
    panel_title(svg, (left + right) / 2.0, "messages per second in total");
    let lowest = bars
        .iter()
        .map(|(_, total)| *total)
        .fold(f64::MAX, f64::min);
    let highest = bars.iter().map(|(_, total)| *total).fold(1.0, f64::max);
    let low_decade = lowest.min(highest).log10().floor() as i32;
    let high_decade = (highest.log10().ceil() as i32).max(low_decade + 1);
    let x = |rate: f64| {
        let position = (rate.log10() - low_decade as f64) / (high_decade - low_decade) as f64;
        left + (right - left) * position.clamp(0.0, 1.0)
    };

    for decade in low_decade..=high_decade {
        let at = x(10f64.powi(decade));
        grid_line(svg, (at, TOP), (at, BOTTOM));
        let text = with_unit(decade, &["", "k", "M", "G"]);
        label(svg, at, BOTTOM + 18.0, "middle", &text);
    }
    axis_titles(svg, (left, right), "messages/s (log scale)", "");

    let slot = (BOTTOM - TOP) / bars.len().max(1) as f64;
    let bar_height = (slot * 0.7).min(22.0);
    let mut scenario_colours = PALETTE.iter().cycle();
    for (index, (row, total)) in bars.iter().enumerate() {
        let top = TOP + slot * index as f64 + (slot - bar_height) / 2.0;
        let fill = match row.target {
            TargetKind::Brook => scenario_colours.next().copied().unwrap_or(PALETTE[0]),
            TargetKind::Relay => RELAY_COLOUR,
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{left}" y="{top:.1}" width="{:.1}" height="{bar_height:.1}" fill="{fill}"/>"#,
            x(*total) - left
        );
        let name = format!("{} {}", row.label, row.target.name());
        label(svg, left - 8.0, top + bar_height / 2.0 + 4.0, "end", &name);
        let value = match row.of_relay {
            Some(fraction) if row.target == TargetKind::Brook => {
                format!(
                    "{} ({:.0}% of relay)",
                    report::rate(*total),
                    fraction * 100.0
                )
            }
            _ => report::rate(*total),
        };
        label(
            svg,
            x(*total) + 5.0,
            top + bar_height / 2.0 + 4.0,
            "start",
            &value,
        );
    }
}

// ---- Drawing helpers ----

fn panel_title(svg: &mut String, centre: f64, text: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{centre}" y="{}" text-anchor="middle" font-size="15">{}</text>"#,
        TOP - 14.0,
        escape(text)
    );
}

fn axis_titles(svg: &mut String, (left, right): (f64, f64), x_title: &str, y_title: &str) {
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        right - left,
        BOTTOM - TOP
    );
    label(svg, (left + right) / 2.0, BOTTOM + 42.0, "middle", x_title);
    if !y_title.is_empty() {
        let (x, y) = (left - 62.0, (TOP + BOTTOM) / 2.0);
        let _ = writeln!(
            svg,
            r#"<text x="{x}" y="{y}" text-anchor="middle" transform="rotate(-90 {x} {y})">{}</text>"#,
            escape(y_title)
        );
    }
}

fn grid_line(svg: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) {
    let _ = writeln!(
        svg,
        r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#ddd"/>"##
    );
}

fn label(svg: &mut String, x: f64, y: f64, anchor: &str, text: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
        escape(text)
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
