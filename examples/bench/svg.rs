//! The chart (`--svg FILE`, by default `target/bench.svg`): a self-contained
//! SVG, written by hand.
//!
//! Left: brook's latency percentile curves, one line per scenario, on the
//! usual "1 − p" log scale (the x axis reaches 90, 99, 99.9, 99.99 % at equal
//! steps, then the maximum) with latency on a log scale, and under them a
//! legend. Right: messages per second in total per scenario, brook next to
//! the relay and NATS, on a log scale.
//!
//! Everything must lie on the canvas, so the layout is worked out from the
//! figures before anything is drawn: the header wraps to as many lines as
//! the setting needs, the panels grow with the number of bars, the bars
//! leave room for the longest name and value, and the canvas grows to hold
//! the legend. Text widths are estimated ([`text_width`]): SVG cannot
//! measure text, and a generous estimate is what keeps labels inside.
//! `tests/bench_chart.rs` checks every element against the canvas.

use std::fmt::Write;

use crate::report::{self, Row};
use crate::target::TargetKind;

pub const WIDTH: f64 = 1200.0;
/// The canvas's margin on every side.
const MARGIN: f64 = 16.0;
const FONT: f64 = 13.0;
const TITLE_FONT: f64 = 18.0;
const SETTING_FONT: f64 = 12.0;
const PANEL_TITLE_FONT: f64 = 15.0;
/// The latency panel's plot area, left to right.
const CURVES: (f64, f64) = (90.0, 560.0);
/// The least height of the plot areas, and the least room a bar takes:
/// its name above it, then the bar.
const PLOT_HEIGHT: f64 = 390.0;
const BAR_SLOT: f64 = 34.0;
/// Where the bars start: names start there too, above their bars, so a long
/// one runs to the right and never into the latency panel.
const BARS_LEFT: f64 = CURVES.1 + 60.0;
/// Legend entries under the latency panel: two to a line.
const LEGEND_COLUMNS: usize = 2;
const LEGEND_LINE: f64 = 20.0;
/// Eight colours and five dash patterns: as 8 and 5 share no factor, the
/// first 40 series each have a pair of their own, and two series of one
/// colour never share a dash.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];
const DASHES: [&str; 5] = ["none", "9 4", "2 3", "12 3 3 3", "5 2"];
const RELAY_COLOUR: &str = "#9e9e9e";
const NATS_COLOUR: &str = "#4d4d4d";
/// `k` = −log10(1 − p) runs from 0 (p = 0) to 4 (p = 99.99 %); the maximum
/// is drawn at 5.
const K_MAX: f64 = 5.0;

/// The width of `text` at `font_size`, estimated on the generous side: an
/// average character of a sans-serif font is about half its size wide.
pub fn text_width(text: &str, font_size: f64) -> f64 {
    text.chars().count() as f64 * font_size * 0.6
}

/// Where everything goes, worked out from the figures.
struct Layout {
    height: f64,
    /// The setting, in lines that each fit the width.
    setting_lines: Vec<String>,
    /// The plot areas' top and bottom.
    top: f64,
    bottom: f64,
    /// Where the bars start and the longest may end, which leaves room for
    /// the longest value after it.
    bars: (f64, f64),
    /// How wide a bar's name may be.
    bar_name_width: f64,
    legend_top: f64,
}

impl Layout {
    fn of(setting: &str, curves: usize, bars: &[Bar]) -> Layout {
        let setting_lines = wrap(setting, WIDTH - 2.0 * MARGIN, SETTING_FONT);
        let top = 62.0 + 16.0 * setting_lines.len() as f64 + 30.0;
        let bottom = top + PLOT_HEIGHT.max(BAR_SLOT * bars.len() as f64);
        let widest_value = bars
            .iter()
            .map(|bar| text_width(&bar.value, FONT))
            .fold(0.0, f64::max);
        let right = (WIDTH - MARGIN - 5.0 - widest_value).max(BARS_LEFT + 100.0);
        let legend_top = bottom + 70.0;
        let legend_lines = curves.div_ceil(LEGEND_COLUMNS) as f64;
        let height = (legend_top + LEGEND_LINE * legend_lines).max(bottom + 60.0) + MARGIN;
        Layout {
            height,
            setting_lines,
            top,
            bottom,
            bars: (BARS_LEFT, right),
            bar_name_width: WIDTH - MARGIN - BARS_LEFT,
            legend_top,
        }
    }
}

/// `text`, cut short with an ellipsis if it is wider than `width`.
fn fit(text: &str, width: f64, font_size: f64) -> String {
    if text_width(text, font_size) <= width {
        return text.to_owned();
    }
    let keep = (width / text_width("m", font_size)) as usize;
    let kept: String = text.chars().take(keep.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// `text` cut at spaces into lines no wider than `width`.
fn wrap(text: &str, width: f64, font_size: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if text_width(&format!("{line} {word}"), font_size) <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// How a series is drawn: its colour and dash pattern.
#[derive(Clone, Copy)]
struct Style {
    colour: &'static str,
    dash: &'static str,
}

fn style(series: usize) -> Style {
    Style {
        colour: PALETTE[series % PALETTE.len()],
        dash: DASHES[series % DASHES.len()],
    }
}

/// The chart of `rows`, headed by `title` and the `setting` they ran in.
pub fn chart(rows: &[Row], title: &str, setting: &str) -> String {
    let curves: Vec<&Row> = rows
        .iter()
        .filter(|row| row.target == TargetKind::Brook && !row.latency.is_empty())
        .collect();
    let bars = bars(rows, &curves);
    let layout = Layout::of(setting, curves.len(), &bars);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="{FONT}">
<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#,
        height = layout.height
    );
    text(&mut svg, (WIDTH / 2.0, 34.0), "middle", TITLE_FONT, title);
    for (index, line) in layout.setting_lines.iter().enumerate() {
        let y = 58.0 + 16.0 * index as f64;
        text(&mut svg, (WIDTH / 2.0, y), "middle", SETTING_FONT, line);
    }
    latency_panel(&mut svg, &layout, &curves);
    throughput_panel(&mut svg, &layout, &bars);
    svg.push_str("</svg>\n");
    svg
}

// ---- Latency percentiles ----

fn latency_panel(svg: &mut String, layout: &Layout, curves: &[&Row]) {
    let (left, right) = CURVES;
    let (top, bottom) = (layout.top, layout.bottom);
    panel_title(
        svg,
        layout,
        (left + right) / 2.0,
        "brook latency by percentile",
    );
    let lowest = curves.iter().map(|row| row.latency.quantile(0.0)).min();
    let highest = curves.iter().map(|row| row.latency.max()).max();
    let (low_decade, high_decade) = decades(lowest.unwrap_or(1_000), highest.unwrap_or(1_000_000));
    let x = |k: f64| left + (right - left) * k / K_MAX;
    let y = |ns: u64| {
        let position =
            ((ns.max(1) as f64).log10() - low_decade as f64) / (high_decade - low_decade) as f64;
        bottom - (bottom - top) * position.clamp(0.0, 1.0)
    };

    for decade in low_decade..=high_decade {
        let at = y(10u64.pow(decade as u32));
        grid_line(svg, (left, at), (right, at));
        label(svg, left - 8.0, at + 4.0, "end", &decade_label(decade));
    }
    for (k, name) in ["0", "90", "99", "99.9", "99.99", "100"].iter().enumerate() {
        let at = x(k as f64);
        grid_line(svg, (at, top), (at, bottom));
        label(svg, at, bottom + 18.0, "middle", name);
    }
    frame(svg, layout, (left, right), "percentile (%)");
    let (title_x, title_y) = (left - 62.0, (top + bottom) / 2.0);
    let _ = writeln!(
        svg,
        r#"<text x="{title_x}" y="{title_y}" text-anchor="middle" transform="rotate(-90 {title_x} {title_y})">latency (log scale)</text>"#
    );

    for (series, row) in curves.iter().enumerate() {
        let Style { colour, dash } = style(series);
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
            r#"<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#
        );
        legend_entry(svg, layout, series, &row.label);
    }
}

/// The legend sits under the latency panel, two entries to a line, each a
/// stretch of its series' line and its label.
fn legend_entry(svg: &mut String, layout: &Layout, series: usize, name: &str) {
    let (left, right) = CURVES;
    let column_width = (right - left) / LEGEND_COLUMNS as f64;
    let x = left + column_width * (series % LEGEND_COLUMNS) as f64;
    let y = layout.legend_top + LEGEND_LINE * (series / LEGEND_COLUMNS) as f64;
    let Style { colour, dash } = style(series);
    let _ = writeln!(
        svg,
        r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3" stroke-dasharray="{dash}"/>"#,
        y - 4.0,
        x + 30.0,
        y - 4.0
    );
    label(svg, x + 36.0, y, "start", name);
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

/// One bar: a row's messages a second in total, its name and value as
/// printed, and its colour.
struct Bar {
    total: f64,
    name: String,
    value: String,
    colour: &'static str,
}

/// The bars of the rows with a throughput, brook's in the colour of their
/// latency curve.
fn bars(rows: &[Row], curves: &[&Row]) -> Vec<Bar> {
    rows.iter()
        .filter_map(|row| Some((row, row.throughput?.total)))
        .filter(|(_, total)| *total > 0.0)
        .map(|(row, total)| {
            let series = curves.iter().position(|curve| std::ptr::eq(*curve, row));
            let colour = match row.target {
                TargetKind::Brook => style(series.unwrap_or(0)).colour,
                TargetKind::Relay => RELAY_COLOUR,
                TargetKind::Nats => NATS_COLOUR,
            };
            let mut comparisons = Vec::new();
            if let (TargetKind::Brook, Some(fraction)) = (row.target, row.of_relay) {
                comparisons.push(format!("{:.0}% of relay", fraction * 100.0));
            }
            if let (TargetKind::Brook, Some(ratio)) = (row.target, row.of_nats) {
                comparisons.push(format!("{ratio:.2}× nats"));
            }
            let value = match comparisons.is_empty() {
                true => report::rate(total),
                false => format!("{} ({})", report::rate(total), comparisons.join(", ")),
            };
            Bar {
                total,
                name: format!("{} {}", row.label, row.target.name()),
                value,
                colour,
            }
        })
        .collect()
}

fn throughput_panel(svg: &mut String, layout: &Layout, bars: &[Bar]) {
    let (left, right) = layout.bars;
    let (top, bottom) = (layout.top, layout.bottom);
    panel_title(
        svg,
        layout,
        (left + right) / 2.0,
        "messages per second in total",
    );
    let lowest = bars.iter().map(|bar| bar.total).fold(f64::MAX, f64::min);
    let highest = bars.iter().map(|bar| bar.total).fold(1.0, f64::max);
    let low_decade = lowest.min(highest).log10().floor() as i32;
    let high_decade = (highest.log10().ceil() as i32).max(low_decade + 1);
    let x = |rate: f64| {
        let position = (rate.log10() - low_decade as f64) / (high_decade - low_decade) as f64;
        left + (right - left) * position.clamp(0.0, 1.0)
    };

    for decade in low_decade..=high_decade {
        let at = x(10f64.powi(decade));
        grid_line(svg, (at, top), (at, bottom));
        let text = with_unit(decade, &["", "k", "M", "G"]);
        label(svg, at, bottom + 18.0, "middle", &text);
    }
    frame(svg, layout, (left, right), "messages/s (log scale)");

    // Each bar's slot: its name's line, then the bar.
    let slot = (bottom - top) / bars.len().max(1) as f64;
    let bar_height = (slot - 24.0).clamp(6.0, 16.0);
    for (index, bar) in bars.iter().enumerate() {
        let slot_top = top + slot * index as f64;
        let name = fit(&bar.name, layout.bar_name_width - 4.0, FONT);
        label(svg, left + 4.0, slot_top + 16.0, "start", &name);
        let bar_top = slot_top + 20.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{left:.1}" y="{bar_top:.1}" width="{:.1}" height="{bar_height:.1}" fill="{}"/>"#,
            x(bar.total) - left,
            bar.colour
        );
        let baseline = bar_top + bar_height / 2.0 + 4.0;
        label(svg, x(bar.total) + 5.0, baseline, "start", &bar.value);
    }
}

// ---- Drawing helpers ----

fn panel_title(svg: &mut String, layout: &Layout, centre: f64, title: &str) {
    let at = (centre, layout.top - 14.0);
    text(svg, at, "middle", PANEL_TITLE_FONT, title);
}

/// A panel's border, and the title under its x axis.
fn frame(svg: &mut String, layout: &Layout, (left, right): (f64, f64), x_title: &str) {
    let _ = writeln!(
        svg,
        r##"<rect x="{left:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#444"/>"##,
        layout.top,
        right - left,
        layout.bottom - layout.top
    );
    label(
        svg,
        (left + right) / 2.0,
        layout.bottom + 42.0,
        "middle",
        x_title,
    );
}

fn grid_line(svg: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) {
    let _ = writeln!(
        svg,
        r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#ddd"/>"##
    );
}

/// Text in the chart's own font size.
fn label(svg: &mut String, x: f64, y: f64, anchor: &str, content: &str) {
    text(svg, (x, y), anchor, FONT, content);
}

fn text(svg: &mut String, (x, y): (f64, f64), anchor: &str, font_size: f64, content: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{font_size}">{}</text>"#,
        escape(content)
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
