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

/// Writes the sweep (concurrency, rate, p99 in ms) as two panels side by side.
pub fn write_plot(path: &std::path::Path, points: &[(usize, f64, f64)]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(400);
    let max_c = points.iter().map(|p| p.0).max().unwrap_or(1) as f64;
    let max_rate = points.iter().map(|p| p.1).fold(1.0, f64::max);
    let max_p99 = points.iter().map(|p| p.2).fold(0.1, f64::max);
    let rates: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, p.1)).collect();
    let p99s: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, p.2)).collect();
    draw_panel(
        &left,
        "tools/call greet: throughput",
        "requests/s",
        max_c,
        max_rate,
        &rates,
        &BLUE,
    )?;
    draw_panel(
        &right,
        "tools/call greet: p99 latency",
        "p99 (ms)",
        max_c,
        max_p99,
        &p99s,
        &RED,
    )?;
    root.present()?;
    Ok(())
}

/// One panel of the plot: `series` against concurrency (log scale), as a line with dots.
fn draw_panel<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    max_x: f64,
    max_y: f64,
    series: &[(f64, f64)],
    color: &plotters::style::RGBColor,
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
    chart.draw_series(LineSeries::new(series.iter().copied(), color))?;
    chart.draw_series(
        series
            .iter()
            .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
    )?;
    Ok(())
}
