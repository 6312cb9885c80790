//! The percentile plot: latency against percentile, every extra nine the
//! same width.

use super::*;

pub(super) const PLOT_SIZE: (u32, u32) = (1200, 720);

/// The x axis is log10(1 / (1 - p)): 0 is the 0th percentile, 1 the 90th,
/// 2 the 99th, and so on, so every extra nine gets the same width.
const PLOT_NINES: f64 = 5.0;

pub(super) fn nines(p: f64) -> f64 {
    -(1.0 - p).log10()
}

pub(super) fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    // 50 and 90 need no decimals, 99.9 one, 99.99 two, …
    let decimals = (x.round() as i64 - 2).clamp(0, 6) as usize;
    format!("{percent:.decimals$}%")
}

pub(super) fn latency_label(us: f64) -> String {
    if us >= 10.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

/// Points of a curve: latency at evenly spaced x up to the percentile the
/// sample count can support, then the maximum.
pub(super) fn curve_points(s: &Series) -> Vec<(f64, f64)> {
    const STEP: f64 = 0.01;
    let count = s.count().max(1) as f64;
    let x_end = count.log10().clamp(nines(0.5), PLOT_NINES);
    let y = |us: u64| (us.max(1)) as f64;
    let mut points: Vec<(f64, f64)> = (0..)
        .map(|i| f64::from(i) * STEP)
        .take_while(|&x| x < x_end)
        .map(|x| {
            let p = 1.0 - 10f64.powf(-x);
            (x, y(s.hist.value_at_quantile(p).min(s.max_us)))
        })
        .collect();
    points.push((x_end, y(s.max_us)));
    points
}

/// The x axis, labelled at 50 %, 90 %, 99 %, … only (plotters' own
/// key-point wrapper cannot be combined with a label formatter).
struct NinesAxis(std::ops::Range<f64>);

impl Ranged for NinesAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (lo, hi) = (self.0.start, self.0.end);
        let t = (value - lo) / (hi - lo);
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            // No light grid lines: only the labelled nines.
            return Vec::new();
        }
        [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999]
            .into_iter()
            .map(nines)
            .filter(|x| self.0.contains(x))
            .collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.0.clone()
    }
}

impl ValueFormatter<f64> for NinesAxis {
    fn format(value: &f64) -> String {
        percentile_label(*value)
    }
}

pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    title: &str,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let lines: Vec<(&Curve, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|c| (c, curve_points(&c.series)))
        .collect();
    let ys = lines.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::MAX, 1.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let lo = if lo == f64::MAX { 1.0 } else { lo };
    // Some room above and below, and a decade at least so the axis has labels.
    let (y_lo, y_hi) = ((lo / 1.5).max(0.5), (hi * 1.5).max(lo * 10.0));
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(NinesAxis(0.0..PLOT_NINES + 0.05), (y_lo..y_hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .y_label_formatter(&|y| latency_label(*y))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(e)?;

    for (curve, points) in lines {
        let color = Palette99::pick(curve.color).to_rgba();
        let style = color.stroke_width(2);
        match curve.clock {
            Clock::Service => {
                chart
                    .draw_series(LineSeries::new(points, style))
                    .map_err(e)?
                    .label(curve.command)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            }
            Clock::Intended => {
                chart
                    .draw_series(DashedLineSeries::new(points, 8, 5, style))
                    .map_err(e)?
                    .label(format!("{} (intended)", curve.command))
                    .legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (8, 0)], style)
                            + PathElement::new(vec![(13, 0), (21, 0)], style)
                    });
            }
        }
    }
    if !curves.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        let labels: Vec<String> = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999]
            .into_iter()
            .map(|p| percentile_label(nines(p)))
            .collect();
        assert_eq!(labels, ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }
}
