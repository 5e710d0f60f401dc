//! `bench-chart RESULTS_CSV OUT_PNG`: draws the results `make bench` collects in the common CSV
//! (`benchmark,case,unit,better,pageperfect,baseline_name,baseline,ratio`) as one PNG with a
//! panel per benchmark: per case, a pageperfect bar beside the baseline's, each with its value,
//! and above them the ratio (how many times better pageperfect is). A panel whose values span
//! more than two orders of magnitude gets a log scale.
//!
//! Run: `cargo run --release -p pageperfect-it --bin bench-chart -- results.csv results.png`.
//! Text is set in DejaVu Sans (Debian package fonts-dejavu-core).

use pageperfect_it::bench_csv::{self, Row};
use plotters::coord::ranged1d::{AsRangedCoord, DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const WIDTH: u32 = 1600;
const TITLE_HEIGHT: u32 = 50;
const PANEL_HEIGHT: u32 = 520;
const TITLE: &str = "pageperfect beside the baseline; above each pair, how many times better pageperfect is (> 1: ahead)";
const PAGEPERFECT_COLOUR: RGBColor = RGBColor(31, 119, 180);
const BASELINE_COLOUR: RGBColor = RGBColor(255, 127, 14);
const WIN_COLOUR: RGBColor = RGBColor(24, 128, 56);
const LOSS_COLOUR: RGBColor = RGBColor(200, 30, 30);
type DrawResult = Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

/// Largest max/min ratio of a panel's values still drawn on a linear scale.
const LINEAR_SPAN: f64 = 100.0;
/// Each bar's share of its case's slot on the x axis; the two bars sit side by side in the middle.
const BAR_WIDTH: f64 = 0.36;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [csv, png] = args.as_slice() else {
        eprintln!("usage: bench-chart RESULTS_CSV OUT_PNG");
        std::process::exit(2);
    };
    if let Err(e) = run(csv, png) {
        eprintln!("bench-chart: {e}");
        std::process::exit(1);
    }
}

fn run(csv: &str, png: &str) -> Result<(), String> {
    let rows = bench_csv::read(csv.as_ref()).map_err(|e| format!("{csv}: {e}"))?;
    let benchmarks = group_by_benchmark(&rows);
    if benchmarks.is_empty() {
        return Err(format!("{csv} has no results"));
    }
    register_font()?;
    let height = TITLE_HEIGHT + PANEL_HEIGHT * benchmarks.len() as u32;
    let root = BitMapBackend::new(png, (WIDTH, height)).into_drawing_area();
    let draw_error = |e: DrawingAreaErrorKind<_>| format!("drawing {png}: {e}");
    root.fill(&WHITE).map_err(draw_error)?;
    let (title, panels) = root.split_vertically(TITLE_HEIGHT);
    let title_style = TextStyle::from(("sans-serif", 20).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    title
        .draw_text(TITLE, &title_style, (WIDTH as i32 / 2, TITLE_HEIGHT as i32 / 2))
        .map_err(draw_error)?;
    for (area, (benchmark, rows)) in panels.split_evenly((benchmarks.len(), 1)).iter().zip(&benchmarks) {
        draw_panel(area, benchmark, rows).map_err(draw_error)?;
    }
    root.present().map_err(draw_error)
}

/// Rows grouped by benchmark, benchmarks and cases in the order they first appear.
fn group_by_benchmark(rows: &[Row]) -> Vec<(&str, Vec<&Row>)> {
    let mut groups: Vec<(&str, Vec<&Row>)> = Vec::new();
    for row in rows {
        match groups.iter_mut().find(|(benchmark, _)| *benchmark == row.benchmark) {
            Some((_, group)) => group.push(row),
            None => groups.push((&row.benchmark, vec![row])),
        }
    }
    groups
}

/// Registers DejaVu Sans as "sans-serif"; plotters keeps the font's bytes for the whole run.
fn register_font() -> Result<(), String> {
    let bytes = std::fs::read(FONT_PATH)
        .map_err(|e| format!("cannot read the font {FONT_PATH} ({e}): install the Debian package fonts-dejavu-core"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Vec::leak(bytes))
        .map_err(|_| format!("{FONT_PATH} is not a usable TrueType font"))
}

/// One benchmark's panel, on a log scale if its values span more than LINEAR_SPAN.
fn draw_panel(area: &DrawingArea<BitMapBackend, Shift>, benchmark: &str, rows: &[&Row]) -> DrawResult {
    let values = rows.iter().flat_map(|row| [row.pageperfect, row.baseline]);
    let (low, high) = values.fold((f64::INFINITY, 0.0_f64), |(low, high), v| (low.min(v), high.max(v)));
    let units = distinct(rows.iter().map(|row| row.unit.as_str()));
    let better = distinct(rows.iter().map(|row| row.better.as_str()));
    let y_label = format!("{units} ({better} is better)");
    if low > 0.0 && high / low > LINEAR_SPAN {
        // Half a decade of room above the highest bar for its labels.
        let range = (low / 2.0)..(high * 3.0);
        draw_bars(area, benchmark, rows, range.clone().log_scale(), range, &format!("{y_label}, log scale"))
    } else {
        // Room above the highest bar for its value, its ratio and, above those, the legend (at
        // 1.2 the legend hid the ratio of a first case that held the highest bar); a range that
        // is not empty if every value is 0.
        let range = 0.0..(high * 1.5).max(f64::MIN_POSITIVE);
        draw_bars(area, benchmark, rows, range.clone(), range, &y_label)
    }
}

/// The distinct values in order of appearance, joined with " / ".
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.join(" / ")
}

/// A panel's grouped bars, legend and labels on the y axis `y_axis` (linear or log) spanning
/// `y_range`; the bars rise from the range's start.
fn draw_bars<Y>(
    area: &DrawingArea<BitMapBackend, Shift>,
    benchmark: &str,
    rows: &[&Row],
    y_axis: Y,
    y_range: Range<f64>,
    y_label: &str,
) -> DrawResult
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let x_axis = CaseAxis { cases: rows.len() };
    let centres = x_axis.centres();
    let mut chart = ChartBuilder::on(area)
        .caption(benchmark, ("sans-serif", 28))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(110)
        .build_cartesian_2d(x_axis, y_axis)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| rows[x.floor() as usize].case.clone())
        .y_label_formatter(&|y| format_value(*y))
        .y_desc(y_label)
        .label_style(("sans-serif", 17))
        .axis_desc_style(("sans-serif", 19))
        .draw()?;

    let bottom = y_range.start;
    let bar = |left: f64, value: f64, colour: RGBColor| Rectangle::new([(left, bottom), (left + BAR_WIDTH, value)], colour.filled());
    let centred = |size: u32, colour: &'static RGBColor| {
        TextStyle::from(("sans-serif", size).into_font())
            .color(colour)
            .pos(Pos::new(HPos::Center, VPos::Bottom))
    };
    let baseline_names = distinct(rows.iter().map(|row| row.baseline_name.as_str()));
    chart
        .draw_series(rows.iter().zip(&centres).map(|(row, &x)| bar(x - BAR_WIDTH, row.pageperfect, PAGEPERFECT_COLOUR)))?
        .label("pageperfect")
        .legend(|(x, y)| Rectangle::new([(x, y - 7), (x + 18, y + 7)], PAGEPERFECT_COLOUR.filled()));
    chart
        .draw_series(rows.iter().zip(&centres).map(|(row, &x)| bar(x, row.baseline, BASELINE_COLOUR)))?
        .label(baseline_names)
        .legend(|(x, y)| Rectangle::new([(x, y - 7), (x + 18, y + 7)], BASELINE_COLOUR.filled()));

    // Each bar's value just above it, and the ratio above the taller bar of the pair.
    for (row, &x) in rows.iter().zip(&centres) {
        for (value, bar_centre) in [(row.pageperfect, x - BAR_WIDTH / 2.0), (row.baseline, x + BAR_WIDTH / 2.0)] {
            chart.draw_series([EmptyElement::at((bar_centre, value)) + Text::new(format_value(value), (0, -3), centred(15, &BLACK))])?;
        }
        let ratio_colour = if row.ratio >= 1.0 { &WIN_COLOUR } else { &LOSS_COLOUR };
        chart.draw_series([EmptyElement::at((x, row.pageperfect.max(row.baseline)))
            + Text::new(format!("{:.2}×", row.ratio), (0, -22), centred(20, ratio_colour))])?;
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 17))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// The x axis of a panel: case i owns the slot [i, i + 1), labelled under its centre.
struct CaseAxis {
    cases: usize,
}

impl CaseAxis {
    fn centres(&self) -> Vec<f64> {
        (0..self.cases).map(|i| i as f64 + 0.5).collect()
    }
}

impl Ranged for CaseAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, x: &f64, (left, right): (i32, i32)) -> i32 {
        left + (f64::from(right - left) * x / self.cases as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _: Hint) -> Vec<f64> {
        self.centres()
    }

    fn range(&self) -> Range<f64> {
        0.0..self.cases as f64
    }
}

/// A non-negative value for a label: three significant digits below 1,000 (0.0123, 4.5, 812),
/// whole numbers with thousands separators above (12,300).
fn format_value(value: f64) -> String {
    if value >= 1000.0 {
        let digits = format!("{value:.0}");
        let mut grouped = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        grouped
    } else if value > 0.0 {
        let decimals = (2 - value.log10().floor() as i32).max(0) as usize;
        let text = format!("{value:.decimals$}");
        if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
    } else {
        format!("{value}")
    }
}
