//! Panels under the main chart: grouped bars of absolute figures, one panel per question (the
//! scale scenario's conn/s, latency and programming time by number of services; east-west).
//! Any scenario adds its own with [`crate::chart::ChartData::panel`]; building them is pure,
//! [`draw`] draws one into its strip of the SVG.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::scale::{Scale, ScalePath};

/// One series of a panel: a value (or none: not measured) per group.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelSeries {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A titled panel of grouped bars.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    /// The y axis, with its unit and which way is better.
    pub y_desc: String,
    /// The label under each group of bars.
    pub groups: Vec<String>,
    pub series: Vec<PanelSeries>,
}

impl Panel {
    /// An empty panel with these groups; add series with [`Panel::series`].
    pub fn new(title: &str, y_desc: &str, groups: Vec<String>) -> Self {
        Self {
            title: title.to_owned(),
            y_desc: y_desc.to_owned(),
            groups,
            series: Vec::new(),
        }
    }

    /// Adds a series (its values in the order of the groups).
    #[must_use]
    pub fn series(mut self, name: &str, values: Vec<Option<f64>>) -> Self {
        self.series.push(PanelSeries {
            name: name.to_owned(),
            values,
        });
        self
    }

    /// The highest bar (at least 1).
    fn max(&self) -> f64 {
        self.series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(1.0, |a, &b| a.max(b))
    }
}

/// The scale scenario's panels: conn/s, p50 and the time to program, by number of services,
/// mesh beside iptables.
pub fn scale_panels(scale: &Scale) -> Vec<Panel> {
    let sizes = scale.sizes();
    if sizes.is_empty() {
        return Vec::new();
    }
    let groups: Vec<String> = sizes
        .iter()
        .map(|n| format!("{n} service{}", if *n == 1 { "" } else { "s" }))
        .collect();
    let values = |path: ScalePath, f: fn(&crate::scale::ScaleRow) -> Option<f64>| {
        sizes
            .iter()
            .map(|n| {
                scale
                    .rows
                    .iter()
                    .find(|r| r.path == path && r.services == *n)
                    .and_then(f)
            })
            .collect::<Vec<_>>()
    };
    let panel = |title: &str, y: &str, f: fn(&crate::scale::ScaleRow) -> Option<f64>| {
        ScalePath::ALL
            .into_iter()
            .fold(Panel::new(title, y, groups.clone()), |p, path| {
                p.series(path.name(), values(path, f))
            })
    };
    vec![
        panel(
            "Scale: new connections/s to the last of N published services",
            "conn/s (higher is better)",
            |r| r.conn_per_s.value(),
        ),
        panel(
            "Scale: p50 latency, one connection at a time",
            "microseconds (lower is better)",
            |r| r.p50_us.value(),
        ),
        panel(
            "Scale: time to program N services from empty",
            "milliseconds (lower is better)",
            |r| r.program_ms.value(),
        ),
    ]
}

/// The scale panels of a results file (its `scale` object), for `mesh-bench chart`.
pub fn scale_panels_from_json(json: &serde_json::Value) -> Vec<Panel> {
    let Some(rows) = json.pointer("/scale/rows").and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    let value = |r: &serde_json::Value, k: &str| {
        r.get(k)
            .and_then(|f| f.get("value"))
            .and_then(serde_json::Value::as_f64)
    };
    let mut scale = Scale::default();
    for r in rows {
        let path = match r.get("path").and_then(|p| p.as_str()) {
            Some("mesh") => ScalePath::Mesh,
            Some("iptables") => ScalePath::Iptables,
            _ => continue,
        };
        let Some(services) = r
            .get("services")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
        else {
            continue;
        };
        let figure = |k| {
            value(r, k).map_or_else(
                || crate::report::Figure::Failed("not in the file".to_owned()),
                crate::report::Figure::Value,
            )
        };
        scale.rows.push(crate::scale::ScaleRow {
            path,
            services,
            program_ms: figure("program_ms"),
            conn_per_s: figure("conn_per_s"),
            p50_us: figure("p50_us"),
            bpf: Vec::new(),
        });
    }
    scale_panels(&scale)
}

/// Where bar `i` of `n` in group `g` starts and ends (each group is 1 wide).
fn bar_x(g: usize, i: usize, n: usize) -> (f64, f64) {
    #[expect(clippy::cast_precision_loss, reason = "a handful of bars")]
    let (g, i, n) = (g as f64, i as f64, n.max(1) as f64);
    let w = 0.8 / n;
    let x0 = g + 0.1 + i * w;
    (x0 + w * 0.08, x0 + w * 0.92)
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(90, 90, 90),
];

/// The colour of series `i` of a panel.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn text_style(px: f64) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", px * 1.24).into_font()).color(&BLACK)
}

/// Draws `panel` into `area` (bars on the left, legend on the right `legend` pixels).
pub fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    legend: u32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let width = area.dim_in_pixel().0;
    let (plot, key) = area.split_horizontally(width.saturating_sub(legend));
    let top = panel.max() * 1.15;
    #[expect(clippy::cast_precision_loss, reason = "a handful of groups")]
    let groups = panel.groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&plot)
        .caption(&panel.title, text_style(15.0))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..groups, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(panel.y_desc.as_str())
        .y_label_formatter(&|y| {
            if top >= 100.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .label_style(text_style(12.0))
        .axis_desc_style(text_style(12.0))
        .y_labels(8)
        .max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    for (g, label) in panel.groups.iter().enumerate() {
        #[expect(clippy::cast_precision_loss, reason = "a handful of groups")]
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        // backend_coord is in the whole SVG's pixels; the area draws in its own.
        let (bx, by) = area.get_base_pixel();
        area.draw(&Text::new(
            label.as_str(),
            (x - bx, y - by + 8),
            text_style(13.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    let bars = panel.series.len().max(1);
    let value_style = text_style(11.0).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (index, s) in panel.series.iter().enumerate() {
        let fill = color(index);
        for (group, value) in s.values.iter().enumerate() {
            let (x0, x1) = bar_x(group, index, bars);
            let mid = f64::midpoint(x0, x1);
            let Some(v) = *value else {
                chart.draw_series(std::iter::once(Text::new(
                    "N/A",
                    (mid, top * 0.01),
                    value_style.clone(),
                )))?;
                continue;
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x1, v)],
                fill.filled(),
            )))?;
            let label = if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            };
            chart.draw_series(std::iter::once(Text::new(
                label,
                (mid, v + top * 0.01),
                value_style.clone(),
            )))?;
        }
    }
    let row = 22;
    let mut y = 48;
    let label = text_style(13.0).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, s) in panel.series.iter().enumerate() {
        key.draw(&Rectangle::new(
            [(8, y - 7), (22, y + 7)],
            color(i).filled(),
        ))?;
        key.draw(&Text::new(s.name.as_str(), (30, y), label.clone()))?;
        y += row;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Figure;
    use crate::scale::ScaleRow;

    fn row(path: ScalePath, n: usize, conns: Figure) -> ScaleRow {
        ScaleRow {
            path,
            services: n,
            program_ms: Figure::Value(2.0),
            conn_per_s: conns,
            p50_us: Figure::Value(40.0),
            bpf: Vec::new(),
        }
    }

    fn scale() -> Scale {
        Scale {
            wiring: String::new(),
            rows: vec![
                row(ScalePath::Mesh, 1, Figure::Value(10000.0)),
                row(ScalePath::Mesh, 1000, Figure::Failed("too many".to_owned())),
                row(ScalePath::Iptables, 1, Figure::Value(8000.0)),
                row(ScalePath::Iptables, 1000, Figure::Value(4000.0)),
            ],
        }
    }

    #[test]
    fn scale_panels_put_mesh_beside_iptables_by_size() {
        let panels = scale_panels(&scale());
        assert_eq!(panels.len(), 3);
        let conns = &panels[0];
        assert_eq!(conns.groups, vec!["1 service", "1000 services"]);
        assert_eq!(conns.series[0].name, "mesh");
        assert_eq!(conns.series[0].values, vec![Some(10000.0), None]);
        assert_eq!(conns.series[1].values, vec![Some(8000.0), Some(4000.0)]);
        assert!(scale_panels(&Scale::default()).is_empty());
    }

    #[test]
    fn scale_panels_are_read_back_from_a_results_file() {
        let json = serde_json::json!({ "scale": scale() });
        assert_eq!(scale_panels_from_json(&json), scale_panels(&scale()));
        assert!(scale_panels_from_json(&serde_json::json!({})).is_empty());
    }
}
