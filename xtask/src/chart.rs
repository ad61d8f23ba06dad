//! Where bench runs keep their figures and the charts drawn from them.
//!
//! Every `cargo xtask bench NAME` run writes `docs/bench/NAME.json`: the
//! bench, the UTC time of the run, N, the number of rounds, our figures
//! (medians with `--anchors`), each anchor's medians and the ratios ours /
//! anchor. `cargo xtask bench --chart` (or `bench chart`) draws one SVG per
//! bench with ratios, `docs/bench/NAME.svg`: a bar per anchor and figure on
//! a logarithmic axis, a line at 1 (as the anchor), the run's date in the
//! caption. docs/BENCHMARKS.md embeds them.
//!
//! Drawn with plotters' SVG backend alone (no default features): text is
//! written as SVG `<text>` and laid out by plotters' estimate, so no font
//! file, fontconfig or system library is read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use serde_json::{Map, Value, json};
use time::{OffsetDateTime, UtcOffset};

/// The folder of the runs' JSON records and the charts, from the root.
pub(crate) const BENCH_DIR: &str = "docs/bench";

/// One colour per anchor, in the order the record lists them.
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// The record of one run: `ours` and each anchor's figures, and for each
/// anchor the ratio ours / anchor of every figure in `keys`.
pub(crate) fn record(
    bench: &str,
    rounds: usize,
    ours: &Value,
    anchors: &[(&str, Value)],
    keys: &[&str],
) -> Value {
    let mut theirs = Map::new();
    let mut ratios = Map::new();
    for (label, figures) in anchors {
        theirs.insert((*label).to_owned(), figures.clone());
        let mut of = Map::new();
        for key in keys {
            if let (Some(a), Some(b)) = (ours[*key].as_f64(), figures[*key].as_f64())
                && b != 0.0
            {
                of.insert((*key).to_owned(), json!(a / b));
            }
        }
        ratios.insert((*label).to_owned(), Value::Object(of));
    }
    json!({
        "bench": bench,
        "date": utc_now(),
        "n": ours["n"],
        "rounds": rounds,
        "keys": keys,
        "ours": ours,
        "anchors": theirs,
        "ratios": ratios,
    })
}

/// Writes `record` as `docs/bench/NAME.json` (the last run of a bench).
pub(crate) fn save(root: &Path, record: &Value) -> Result<PathBuf> {
    let name = record["bench"]
        .as_str()
        .context("a record names its bench")?;
    let dir = root.join(BENCH_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(record)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Draws `docs/bench/NAME.svg` from every `docs/bench/NAME.json` with
/// ratios; returns the charts written.
pub(crate) fn chart_all(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join(BENCH_DIR);
    let mut records: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {} (run a bench first)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    records.sort();
    let mut written = Vec::new();
    for path in records {
        let text = std::fs::read_to_string(&path)?;
        let record: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let Some(svg) = render(&record).with_context(|| format!("charting {}", path.display()))?
        else {
            eprintln!(
                "xtask: {}: no ratios (run with --anchors), no chart",
                path.display()
            );
            continue;
        };
        let out = path.with_extension("svg");
        std::fs::write(&out, svg).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("xtask: chart {}", out.display());
        written.push(out);
    }
    Ok(written)
}

/// The ratios of `record` as (anchor, [(figure, ratio)]), in its key order.
fn ratios(record: &Value) -> Vec<(String, Vec<(String, f64)>)> {
    let keys: Vec<&str> = record["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for (label, of) in record["ratios"].as_object().into_iter().flatten() {
        let figures: Vec<(String, f64)> = keys
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), of[*k].as_f64()?)))
            .filter(|(_, r)| r.is_finite() && *r > 0.0)
            .collect();
        if !figures.is_empty() {
            out.push((label.clone(), figures));
        }
    }
    out
}

/// The SVG chart of `record`'s ratios; `None` when it has none.
pub(crate) fn render(record: &Value) -> Result<Option<String>> {
    let series = ratios(record);
    if series.is_empty() {
        return Ok(None);
    }
    if series.len() > COLOURS.len() {
        bail!(
            "{} anchors: at most {} are charted",
            series.len(),
            COLOURS.len()
        );
    }
    let bench = record["bench"].as_str().unwrap_or("bench");
    let date = record["date"].as_str().unwrap_or("undated");
    let mut keys: Vec<String> = Vec::new();
    for (_, figures) in &series {
        for (key, _) in figures {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    let all = series.iter().flat_map(|(_, f)| f.iter().map(|(_, r)| *r));
    let (lo, hi) = all.fold((0.5f64, 2.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let (lo, hi) = (lo / 2.0, hi * 2.0);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{bench}: ours / anchor, ratio of medians (run of {date})"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..keys.len() as f64, (lo..hi).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("ours / anchor (below 1: ours is less)")
            .y_label_formatter(&|y| format!("{y:.2}x"))
            .draw()
            .map_err(plot_error)?;
        let width = 0.8 / series.len() as f64;
        for (slot, (label, figures)) in series.iter().enumerate() {
            let colour = COLOURS[slot];
            let bars = figures.iter().filter_map(|(key, ratio)| {
                let at = keys.iter().position(|k| k == key)? as f64 + 0.1 + width * slot as f64;
                Some(Rectangle::new(
                    [(at, lo), (at + width * 0.9, *ratio)],
                    colour.filled(),
                ))
            });
            chart
                .draw_series(bars)
                .map_err(plot_error)?
                .label(format!("ours / {label}"))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
                });
        }
        // 1x: as the anchor.
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(0.0, 1.0), (keys.len() as f64, 1.0)],
                BLACK.stroke_width(1),
            )))
            .map_err(plot_error)?;
        // The figures' names under their groups.
        for (i, key) in keys.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, lo));
            root.draw(&Text::new(
                key.clone(),
                (x - 4 * key.len() as i32, y + 8),
                ("sans-serif", 14),
            ))
            .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(Some(svg))
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {error}")
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    utc(OffsetDateTime::now_utc())
}

/// `at` as `YYYY-MM-DD HH:MM UTC` (in UTC, whatever its offset).
fn utc(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        record(
            "lifecycle",
            3,
            &json!({"n": 1000, "start_s": 1.2, "stop_s": 0.75, "bytes_per_agent": 8000.0}),
            &[
                (
                    "otp",
                    json!({"n": 1000, "start_s": 1.5, "stop_s": 1.5, "bytes_per_agent": 3500.0}),
                ),
                (
                    "kameo-raw",
                    json!({"n": 1000, "start_s": 1.2, "stop_s": 0.5, "bytes_per_agent": 7000.0}),
                ),
            ],
            &["start_s", "stop_s", "bytes_per_agent"],
        )
    }

    // The record holds the ratios ours / anchor of the figures asked for.
    #[test]
    fn a_record_holds_the_ratios_of_medians() {
        let r = fixture();
        assert_eq!(r["ratios"]["otp"]["stop_s"], json!(0.5));
        assert_eq!(r["ratios"]["kameo-raw"]["start_s"], json!(1.0));
        assert_eq!(r["n"], json!(1000));
        assert!(r["date"].as_str().unwrap().ends_with(" UTC"));
    }

    // A chart from a small record: an SVG with a bar per anchor and
    // figure, the legend, the figures' names and the run's date.
    #[test]
    fn renders_an_svg_chart_from_a_record() {
        let mut r = fixture();
        r["date"] = json!("2026-12-07 06:00 UTC");
        let svg = render(&r).unwrap().expect("the record has ratios");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "ours / otp",
            "ours / kameo-raw",
            "start_s",
            "bytes_per_agent",
            "run of 2026-12-07 06:00 UTC",
        ] {
            assert!(svg.contains(text), "the chart lacks {text:?}");
        }
        // Six bars (two anchors, three figures), two legend swatches, the
        // background and the legend's box: filled rectangles of the
        // anchors' colours.
        let otp = svg.matches("fill=\"#1F77B4\"").count();
        let kameo = svg.matches("fill=\"#FF7F0E\"").count();
        assert_eq!((otp, kameo), (4, 4), "bars and legend swatches per anchor");
    }

    // A run without anchors has no ratios: no chart.
    #[test]
    fn no_chart_without_ratios() {
        let r = record("node", 1, &json!({"n": 1}), &[], &[]);
        assert!(render(&r).unwrap().is_none());
    }

    // Runs are dated in UTC, to the minute.
    #[test]
    fn utc_dates() {
        let at = |secs| OffsetDateTime::from_unix_timestamp(secs).unwrap();
        assert_eq!(utc(at(0)), "1970-01-01 00:00 UTC");
        assert_eq!(utc(at(1_796_623_200)), "2026-12-07 06:00 UTC");
        assert_eq!(utc(at(951_782_400)), "2000-02-29 00:00 UTC");
        let east = at(1_796_623_200).to_offset(UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(utc(east), "2026-12-07 06:00 UTC");
    }
}
