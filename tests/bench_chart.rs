//! The bench's chart (`examples/bench/svg.rs`) keeps everything on its
//! canvas: drawn from made-up figures chosen to stretch it (many series,
//! long names, latencies from a nanosecond to seconds, rates from a few a
//! second to a hundred million), every text, line, polyline and rectangle
//! must lie inside the width and height the SVG declares, and every latency
//! series must differ from every other in colour or dash pattern, from the
//! next one in both.
//!
//! The chart's modules are the bench's own, included by path: the bench is
//! an example, which a test cannot depend on otherwise.

#[allow(dead_code)]
#[path = "../examples/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../examples/bench/histogram.rs"]
mod histogram;
#[allow(dead_code)]
#[path = "../examples/bench/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../examples/bench/relay.rs"]
mod relay;
#[allow(dead_code)]
#[path = "../examples/bench/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../examples/bench/svg.rs"]
mod svg;
#[allow(dead_code)]
#[path = "../examples/bench/target.rs"]
mod target;

use std::collections::HashSet;

use report::{Row, Throughput};
use target::TargetKind;

/// Rows as a long default run with `--peer nats` might give: brook rows
/// with latencies, each followed by a relay and a NATS row.
fn made_up_rows() -> Vec<Row> {
    let names = [
        "1to1",
        "1to1-frame",
        "line",
        "1to1-64k",
        "fanout 1→10",
        "fanout-frame 1→10",
        "group 1→4",
        "fanin 4→1",
        "nton 4×1→1",
        "latency 10,000/s",
        "connections 1,000",
        "storage disk-always",
        "recovery 1.00GiB restart disk-batch",
        "replay 1.00GiB pair 10,000/s during replay",
        "topics 16×80.0MiB publish",
        "fanout-frame frame-writes 1→1000 disk-never",
    ];
    let mut rows = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let rate = 5.0 * 3.4f64.powi(index as i32);
        for (target, share) in [
            (TargetKind::Brook, 1.0),
            (TargetKind::Relay, 3.0),
            (TargetKind::Nats, 0.7),
        ] {
            let mut row = Row::new("1to1", name.to_string(), target, 1);
            row.throughput = Some(Throughput {
                per_subscriber: rate * share,
                total: rate * share,
            });
            if target == TargetKind::Brook {
                row.of_relay = Some(1.0 / 3.0);
                row.of_nats = Some(1.0 / 0.7);
                for step in 0..1000u64 {
                    row.latency
                        .record(1 + step * step * (index as u64 + 1) * 9_000);
                }
            }
            rows.push(row);
        }
    }
    rows
}

/// `name="value"` of an element's start tag.
fn attribute<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let length = element[start..].find('"')?;
    Some(&element[start..start + length])
}

fn number(element: &str, name: &str) -> f64 {
    attribute(element, name)
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in {element}"))
}

/// Every element of one kind: its start tag, and what comes before its
/// end tag (a text's content).
fn elements<'a>(svg: &'a str, tag: &str) -> Vec<(&'a str, &'a str)> {
    let open = format!("<{tag} ");
    svg.match_indices(&open)
        .map(|(start, _)| {
            let rest = &svg[start..];
            let tag_end = rest.find('>').expect("a tag ends") + 1;
            let content_end = rest.find("</").unwrap_or(tag_end).max(tag_end);
            (&rest[..tag_end], &rest[tag_end..content_end])
        })
        .collect()
}

/// The chart's own width estimate, checked to be generous: at least what
/// DejaVu Sans, its widest font, takes for an average character.
fn width_of(text: &str, font_size: f64) -> f64 {
    let estimate = svg::text_width(text, font_size);
    assert!(estimate >= text.chars().count() as f64 * font_size * 0.55);
    estimate
}

struct Canvas {
    width: f64,
    height: f64,
}

impl Canvas {
    fn of(svg: &str) -> Canvas {
        let (root, _) = elements(svg, "svg")[0];
        let canvas = Canvas {
            width: number(root, "width"),
            height: number(root, "height"),
        };
        let view_box = format!("0 0 {} {}", canvas.width, canvas.height);
        assert_eq!(attribute(root, "viewBox"), Some(view_box.as_str()));
        canvas
    }

    fn assert_holds(&self, (x, y): (f64, f64), what: &str) {
        assert!(
            (0.0..=self.width).contains(&x) && (0.0..=self.height).contains(&y),
            "{what}: ({x:.1}, {y:.1}) is off the {}×{} canvas",
            self.width,
            self.height
        );
    }
}

/// A text's box: its width by the estimate, from the baseline up by the
/// font size and down by a quarter of it; turned with a `rotate(-90 …)`.
fn text_corners(tag: &str, content: &str) -> [(f64, f64); 2] {
    let font_size = attribute(tag, "font-size").map_or(13.0, |size| size.parse().unwrap());
    let content = content
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let width = width_of(&content, font_size);
    let (x, y) = (number(tag, "x"), number(tag, "y"));
    let (before, after) = match attribute(tag, "text-anchor") {
        Some("middle") => (width / 2.0, width / 2.0),
        Some("end") => (width, 0.0),
        _ => (0.0, width),
    };
    let (above, below) = (font_size, font_size / 4.0);
    match attribute(tag, "transform") {
        // Turned a quarter to the left about (x, y): the text runs upwards.
        Some(turn) if turn.starts_with("rotate(-90") => {
            [(x - above, y - after), (x + below, y + before)]
        }
        Some(other) => panic!("a transform the check does not know: {other}"),
        None => [(x - before, y - above), (x + after, y + below)],
    }
}

#[test]
fn every_element_of_the_chart_lies_on_its_canvas() {
    let rows = made_up_rows();
    let setting = "2 cores (linux): brook in-process, store memory + disk-never + disk-batch \
                   + disk-always (data dirs in /tmp, ext4), window 16384, retention 256MiB per \
                   topic, --cache-bytes 256MiB, --memory-bytes 512MiB, payload 128 B";
    let svg = svg::chart(&rows, "brook bench", setting);
    let canvas = Canvas::of(&svg);

    let texts = elements(&svg, "text");
    assert!(
        texts.len() > 2 * rows.len(),
        "every bar has a name and a value"
    );
    for (tag, content) in &texts {
        for corner in text_corners(tag, content) {
            canvas.assert_holds(corner, &format!("the text '{content}'"));
        }
    }
    for (tag, _) in elements(&svg, "line") {
        canvas.assert_holds((number(tag, "x1"), number(tag, "y1")), tag);
        canvas.assert_holds((number(tag, "x2"), number(tag, "y2")), tag);
    }
    for (tag, _) in elements(&svg, "rect") {
        let (x, y) = (number(tag, "x"), number(tag, "y"));
        canvas.assert_holds((x, y), tag);
        canvas.assert_holds((x + number(tag, "width"), y + number(tag, "height")), tag);
    }
    let polylines = elements(&svg, "polyline");
    for (tag, _) in &polylines {
        for point in attribute(tag, "points").unwrap().split_whitespace() {
            let (x, y) = point.split_once(',').unwrap();
            canvas.assert_holds((x.parse().unwrap(), y.parse().unwrap()), "a latency curve");
        }
    }

    // The title and the whole setting are there, the setting wrapped.
    let words: Vec<&str> = texts.iter().map(|(_, content)| *content).collect();
    assert!(words.contains(&"brook bench"));
    let setting_shown: Vec<&str> = words
        .iter()
        .copied()
        .skip_while(|content| !setting.starts_with(content))
        .take_while(|content| setting.contains(content))
        .collect();
    assert!(setting_shown.len() > 1, "so long a setting takes lines");
    assert_eq!(setting_shown.join(" "), setting);

    // One curve and one legend entry per brook row, each series drawn
    // its own way.
    let curves = rows.iter().filter(|row| row.target == TargetKind::Brook);
    assert_eq!(polylines.len(), curves.count());
    let look = |tag: &str| {
        (
            attribute(tag, "stroke").unwrap().to_owned(),
            attribute(tag, "stroke-dasharray").unwrap().to_owned(),
        )
    };
    let styles: Vec<(String, String)> = polylines.iter().map(|(tag, _)| look(tag)).collect();
    let distinct: HashSet<&(String, String)> = styles.iter().collect();
    assert_eq!(distinct.len(), styles.len(), "two series look alike");
    for pair in styles.windows(2) {
        assert!(pair[0].0 != pair[1].0 && pair[0].1 != pair[1].1);
    }
    let legend_lines: Vec<(String, String)> = elements(&svg, "line")
        .iter()
        .filter(|(tag, _)| attribute(tag, "stroke-dasharray").is_some())
        .map(|(tag, _)| look(tag))
        .collect();
    assert_eq!(
        legend_lines, styles,
        "the legend draws each series as its curve"
    );
}
