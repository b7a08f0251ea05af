//! The SVG chart: one column of panels per fixture file; the top row plots requests/s against
//! connections, the bottom row server CPU µs per request. One line per server (uring, epoll,
//! nginx's better sendfile setting) through the medians; on the top row every round's figure is a
//! faint dot so the spread is visible.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use std::collections::BTreeMap;

use crate::report::{Cell, Column, Lab, Shown, rate};

const WIDTH: u32 = 540;
const HEIGHT: u32 = 400;

fn colour(col: Column) -> RGBColor {
    match col {
        Column::Uring => RGBColor(31, 119, 180),
        Column::Epoll => RGBColor(255, 127, 14),
        Column::Nginx => RGBColor(44, 160, 44),
    }
}

/// What a row of panels plots.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Metric {
    ReqPerSec,
    CpuPerReq,
}

impl Metric {
    fn value(self, cell: &Cell) -> Option<f64> {
        match self {
            Metric::ReqPerSec => Some(cell.req_s),
            Metric::CpuPerReq => cell.cpu_us,
        }
        .filter(|v| v.is_finite())
    }

    /// Every round's figure (only kept for req/s).
    fn rounds(self, cell: &Cell) -> &[f64] {
        match self {
            Metric::ReqPerSec => &cell.all_req_s,
            Metric::CpuPerReq => &[],
        }
    }

    fn desc(self) -> &'static str {
        match self {
            Metric::ReqPerSec => "requests/s (higher is better)",
            Metric::CpuPerReq => "server CPU µs per request (lower is better)",
        }
    }
}

/// Writes the chart to `path`.
pub fn write_svg(lab: &Lab, path: &Path) -> Result<(), String> {
    draw(lab, path).map_err(|e| format!("chart {}: {e}", path.display()))
}

fn draw(lab: &Lab, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let panels = lab.fixtures.len().max(1);
    let root = SVGBackend::new(path, (WIDTH * panels as u32, 2 * HEIGHT + 50)).into_drawing_area();
    root.fill(&WHITE)?;
    let m = &lab.setup.machine;
    let root = root.titled(
        &format!(
            "uring-httpd lab {}: medians of {} round(s) × {} s, 1 worker each — kernel {}, {}, {} cores",
            m.date, lab.setup.rounds, lab.setup.duration_s, m.kernel, m.cpu, m.cores
        ),
        ("sans-serif", 22),
    )?;
    let shown = lab.shown();
    let areas = root.split_evenly((2, panels));
    for (row, metric) in [Metric::ReqPerSec, Metric::CpuPerReq]
        .into_iter()
        .enumerate()
    {
        for f in 0..lab.fixtures.len() {
            panel(&areas[row * panels + f], lab, &shown, f, metric)?;
        }
    }
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    lab: &Lab,
    shown: &BTreeMap<(usize, usize, Column), Shown>,
    f: usize,
    metric: Metric,
) -> Result<(), Box<dyn std::error::Error>> {
    let fx = &lab.fixtures[f];
    let concs = &lab.setup.concurrencies;
    let mut top: f64 = 0.0;
    for ((ff, _, _), s) in shown {
        if *ff == f {
            let v = metric.value(&s.cell).unwrap_or(0.0);
            let r = metric.rounds(&s.cell).iter().copied().fold(0.0, f64::max);
            top = top.max(v).max(r);
        }
    }
    // Head room for the legend.
    let top = if top.is_finite() && top > 0.0 {
        top * 1.5
    } else {
        1.0
    };
    // Plotters' integer ranges are inclusive: n values need 0..n-1.
    let last = concs.len().saturating_sub(1) as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} — {}", fx.label, metric.desc()),
            ("sans-serif", 17),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((0..last).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(1)
        .x_desc("connections")
        .x_labels(concs.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => concs
                .get(*i as usize)
                .map_or(String::new(), |c| c.to_string()),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|v| rate(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    for col in [Column::Uring, Column::Epoll, Column::Nginx] {
        let colour = colour(col);
        let mut line = Vec::new();
        let mut dots = Vec::new();
        for (i, c) in concs.iter().enumerate() {
            let Some(s) = shown.get(&(f, *c, col)) else {
                continue;
            };
            let x = SegmentValue::CenterOf(i as i32);
            if let Some(v) = metric.value(&s.cell) {
                line.push((x.clone(), v));
            }
            dots.extend(metric.rounds(&s.cell).iter().map(|r| (x.clone(), *r)));
        }
        if line.is_empty() {
            continue;
        }
        let label = if col == Column::Nginx {
            "nginx (best of sendfile on/off)"
        } else {
            col.label()
        };
        chart
            .draw_series(LineSeries::new(line.clone(), colour.stroke_width(3)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 5, colour.filled())))?;
        chart.draw_series(
            dots.into_iter()
                .map(|p| Circle::new(p, 3, colour.mix(0.4).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 15))
        .draw()?;
    Ok(())
}
