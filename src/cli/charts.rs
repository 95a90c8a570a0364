//! `continuity stats --png DIR`: the analytics as charts: the moves between device classes
//! (a heat map), the handoff latency (a histogram), and handoffs per day by result.

use std::path::{Path, PathBuf};

use continuity::stats::Stats;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The font the charts' text is drawn with (fonts-dejavu-core, which `make demo` and
/// `make test` install); another may be given with CONTINUITY_CHART_FONT.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<(), String> {
    let path = std::env::var("CONTINUITY_CHART_FONT").unwrap_or_else(|_| FONT.into());
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("the charts' font {path}: {e} (install fonts-dejavu-core)"))?;
    // The font lives as long as the process: it is read once.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{path} is not a font plotters can read"))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Successful handoffs from class to class: rows are sources, columns targets.
fn transitions(s: &Stats, file: &Path) -> Result<(), String> {
    let mut classes: Vec<String> = s
        .transitions_by_class
        .iter()
        .flat_map(|(from, tos)| std::iter::once(from.clone()).chain(tos.keys().cloned()))
        .collect();
    classes.sort();
    classes.dedup();
    let n = classes.len().max(1);
    let max = s
        .transitions_by_class
        .values()
        .flat_map(|t| t.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let root = BitMapBackend::new(file, (720, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Handoffs: from (rows) to (columns)", ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..n as f64, 0f64..n as f64)
        .map_err(err)?;
    // A label at the middle of each cell, none elsewhere.
    let label = |v: &f64| {
        let i = v.floor();
        if (v - i - 0.5).abs() < 1e-6 {
            classes.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(2 * n + 1)
        .y_labels(2 * n + 1)
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .label_style(("sans-serif", 18))
        .draw()
        .map_err(err)?;
    for (r, from) in classes.iter().enumerate() {
        for (c, to) in classes.iter().enumerate() {
            let count = s
                .transitions_by_class
                .get(from)
                .and_then(|t| t.get(to))
                .copied()
                .unwrap_or(0);
            let shade = 1.0 - 0.8 * count as f64 / max as f64;
            let color = RGBColor(
                (40.0 + 215.0 * shade) as u8,
                (90.0 + 165.0 * shade) as u8,
                255,
            );
            let (x, y) = (c as f64, r as f64);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.02, y + 0.02), (x + 0.98, y + 0.98)],
                    color.filled(),
                )))
                .map_err(err)?;
            let style = ("sans-serif", 26)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .draw_series(std::iter::once(Text::new(
                    count.to_string(),
                    (x + 0.5, y + 0.5),
                    style,
                )))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// The latency of the successful handoffs, in 10 ms bins.
fn latency(s: &Stats, file: &Path) -> Result<(), String> {
    let values: Vec<f64> = s.list.iter().filter_map(|h| h.latency_ms).collect();
    let top = values.iter().copied().fold(100.0, f64::max);
    let bins = ((top / 10.0).ceil() as usize).max(1);
    let mut counts = vec![0usize; bins + 1];
    for v in &values {
        counts[((v / 10.0) as usize).min(bins)] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1);
    let root = BitMapBackend::new(file, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Handoff latency ({} handoffs)", values.len()),
            ("sans-serif", 26),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(50)
        .build_cartesian_2d((0..bins + 1).into_segmented(), 0..max + 1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("request to playing, ms (10 ms bins)")
        .y_desc("handoffs")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => format!("{}", i * 10),
            SegmentValue::Last => String::new(),
        })
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(RGBColor(40, 90, 255).filled())
                .margin(2)
                .data(counts.iter().enumerate().map(|(i, c)| (i, *c))),
        )
        .map_err(err)?;
    root.present().map_err(err)
}

/// Handoffs per day (UTC), succeeded and failed side by side.
fn over_time(s: &Stats, file: &Path) -> Result<(), String> {
    const DAY: u64 = 86_400 * 1_000_000_000;
    let first = s.since_unix_ns / DAY;
    let days = ((s.until_unix_ns / DAY).saturating_sub(first) + 1) as usize;
    let mut ok = vec![0usize; days];
    let mut failed = vec![0usize; days];
    for h in &s.list {
        let d = ((h.at_unix_ns / DAY).saturating_sub(first) as usize).min(days - 1);
        if h.failure.is_none() {
            ok[d] += 1;
        } else {
            failed[d] += 1;
        }
    }
    let max = ok.iter().chain(&failed).copied().max().unwrap_or(1).max(1);
    let root = BitMapBackend::new(file, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let rate = s
        .success_rate
        .map(|r| format!("{:.0} % succeeded", r * 100.0))
        .unwrap_or_else(|| "no handoffs".into());
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Handoffs per day: {rate}"), ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..days as f64, 0..max + 1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("days ago")
        .y_desc("handoffs")
        .x_labels(days.min(14) + 1)
        .x_label_formatter(&|v| format!("{}", days as i64 - v.round() as i64))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    let bar = |day: usize, shift: f64, count: usize, color: RGBColor| {
        let x = day as f64 + shift;
        Rectangle::new([(x, 0), (x + 0.4, count)], color.filled())
    };
    chart
        .draw_series(
            ok.iter()
                .enumerate()
                .map(|(d, c)| bar(d, 0.1, *c, RGBColor(40, 160, 80))),
        )
        .map_err(err)?
        .label("succeeded")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 6), (x + 12, y + 6)],
                RGBColor(40, 160, 80).filled(),
            )
        });
    chart
        .draw_series(
            failed
                .iter()
                .enumerate()
                .map(|(d, c)| bar(d, 0.5, *c, RGBColor(210, 60, 50))),
        )
        .map_err(err)?
        .label("failed")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 6), (x + 12, y + 6)],
                RGBColor(210, 60, 50).filled(),
            )
        });
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Write the three charts into `dir`; the files written.
pub fn write(s: &Stats, dir: &Path) -> Result<Vec<PathBuf>, String> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files = [
        (
            "transitions.png",
            transitions as fn(&Stats, &Path) -> Result<(), String>,
        ),
        ("latency.png", latency),
        ("handoffs-per-day.png", over_time),
    ];
    let mut written = Vec::new();
    for (name, draw) in files {
        let file = dir.join(name);
        draw(s, &file).map_err(|e| format!("{}: {e}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}
