//! How the figures are written: the Markdown table rows of `run`, memory in MiB, and the SVG plot
//! of `tools/call` throughput and p99 latency against concurrency.

use crate::load::Measured;

/// A size in KiB, written in MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A row of the results table: rate, p50, p99, other answers, target.
pub fn print_row(name: &str, m: &Measured, target: &str) {
    println!(
        "| {name} | {:.0}/s | {:.2} ms | {:.2} ms | {} | {target} |",
        m.rate(),
        m.percentile(0.50),
        m.percentile(0.99),
        m.refused()
    );
}

/// A row of the overload table: what was admitted and how fast, what was refused, and RSS.
pub fn print_overload_row(
    name: &str,
    concurrency: usize,
    m: &Measured,
    before: u64,
    peak: u64,
    after: u64,
) {
    println!(
        "| {name} | {concurrency} | {:.0}/s | {:.2} ms | {:.2} ms | {} | {} | {} | {} | {} |",
        m.rate(),
        m.percentile(0.50),
        m.percentile(0.99),
        m.refused(),
        if m.other_latencies_us.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2} ms", m.refused_percentile(0.99))
        },
        mib(before),
        mib(peak),
        mib(after),
    );
}

/// A named sweep: (concurrency, rate, p99 in ms) points.
pub type Series<'a> = (&'a str, &'a [(usize, f64, f64)]);

/// Writes the sweeps as two panels side by side, throughput and p99, one line per sweep.
pub fn write_plot(path: &std::path::Path, sweeps: &[Series]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(400);
    let points = || sweeps.iter().flat_map(|(_, points)| points.iter());
    let max_c = points().map(|p| p.0).max().unwrap_or(1) as f64;
    let max_rate = points().map(|p| p.1).fold(1.0, f64::max);
    let max_p99 = points().map(|p| p.2).fold(0.1, f64::max);
    let colors = [BLUE, RED, GREEN, MAGENTA];
    let lines = |value: fn(&(usize, f64, f64)) -> f64| -> Vec<Line> {
        sweeps
            .iter()
            .zip(colors.iter().cycle())
            .map(|((name, points), color)| Line {
                name,
                points: points.iter().map(|p| (p.0 as f64, value(p))).collect(),
                color: *color,
            })
            .collect()
    };
    draw_panel(
        &left,
        "tools/call greet: throughput",
        "requests/s",
        max_c,
        max_rate,
        &lines(|p| p.1),
    )?;
    draw_panel(
        &right,
        "tools/call greet: p99 latency",
        "p99 (ms)",
        max_c,
        max_p99,
        &lines(|p| p.2),
    )?;
    root.present()?;
    Ok(())
}

/// One line of a panel: a sweep's name, its points, its color.
struct Line<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
    color: plotters::style::RGBColor,
}

/// One panel of the plot: each line against concurrency (log scale), with dots and a legend.
fn draw_panel<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    max_x: f64,
    max_y: f64,
    lines: &[Line],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..max_x * 1.1).log_scale(), 0f64..max_y * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("concurrency")
        .y_desc(y_desc)
        .draw()?;
    for line in lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color))?
            .label(line.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        chart.draw_series(
            line.points
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
