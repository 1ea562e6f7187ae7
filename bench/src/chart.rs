//! The chart of a run (an SVG, `bench/chart.svg` in the README): every scenario relative to the
//! direct path of its lab on the figures where more is better (TCP with 1 and 4 streams, new
//! connections per second, 64-byte packets per second), grouped by figure, with the level each
//! ratio target asks of a mesh bar. Preparing the data is pure ([`prepare`]); drawing is
//! [`draw_svg`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::panel::{self, Panel};
use crate::report::{Metric, Results, Scenario};

/// Each scenario's figures by metric (only the values; a missing figure is absent).
pub type Figures = BTreeMap<Scenario, BTreeMap<Metric, f64>>;

/// The groups of bars, in order: the figure and its label under the group.
pub const GROUPS: [(Metric, &str); 4] = [
    (Metric::Tcp1, "TCP, 1 stream"),
    (Metric::Tcp4, "TCP, 4 streams"),
    (Metric::ConnPerSec, "new connections/s"),
    (Metric::Pps64, "64-byte packets/s"),
];

/// The ratio targets of issue 7 as levels on this chart: the mesh scenario's bar in the group
/// of the metric must reach `factor` times the reference scenario's bar (`report`'s targets say
/// the same in words; the latency and DNS targets are not ratios to direct and are not drawn).
const TARGETS: [(Metric, Scenario, f64, Scenario); 7] = [
    (Metric::Tcp1, Scenario::MeshTc, 0.9, Scenario::Direct),
    (Metric::Tcp4, Scenario::MeshTc, 0.9, Scenario::Direct),
    (
        Metric::ConnPerSec,
        Scenario::MeshTc,
        2.0,
        Scenario::Userspace,
    ),
    (
        Metric::ConnPerSec,
        Scenario::MeshLocal,
        2.0,
        Scenario::Userspace,
    ),
    (
        Metric::ConnPerSec,
        Scenario::MeshXdp,
        2.0,
        Scenario::UserspaceXdp,
    ),
    (
        Metric::ConnPerSec,
        Scenario::MeshXdp,
        1.5,
        Scenario::IptablesXdp,
    ),
    (Metric::Pps64, Scenario::MeshXdp, 1.5, Scenario::IptablesXdp),
];

/// One scenario's bars: its ratio to direct of its lab in each group (None: not measured).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub scenario: Scenario,
    pub ratios: Vec<Option<f64>>,
}

/// A target's level over one bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub group: usize,
    pub series: usize,
    pub level: f64,
    /// What it asks, e.g. `2x userspace`.
    pub label: String,
}

/// What the chart shows.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartData {
    pub title: String,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
    /// Panels of absolute figures drawn under the ratio chart, in order.
    pub panels: Vec<Panel>,
}

impl ChartData {
    /// Adds a panel under the chart (a scenario's own figures: see [`crate::panel`]).
    pub fn panel(&mut self, panel: Panel) {
        self.panels.push(panel);
    }

    /// The highest bar or mark (at least 1, direct's level).
    pub fn max(&self) -> f64 {
        self.series
            .iter()
            .flat_map(|s| s.ratios.iter().flatten())
            .chain(self.marks.iter().map(|m| &m.level))
            .fold(1.0, |a, &b| a.max(b))
    }
}

/// The chart's data from a run's figures: a series per scenario that ran, `direct` of each lab
/// left out (it is the line at 1), and a mark per ratio target whose figures are there.
pub fn prepare(title: &str, figures: &Figures) -> ChartData {
    let ratio = |s: Scenario, m: Metric| {
        let v = figures.get(&s)?.get(&m)?;
        let reference = figures.get(&s.reference())?.get(&m)?;
        (*reference > 0.0).then(|| v / reference)
    };
    let series: Vec<Series> = Scenario::ALL
        .into_iter()
        .filter(|s| *s != s.reference() && figures.contains_key(s))
        .map(|s| Series {
            scenario: s,
            ratios: GROUPS.iter().map(|(m, _)| ratio(s, *m)).collect(),
        })
        .collect();
    let marks = TARGETS
        .iter()
        .filter_map(|&(m, mesh, factor, reference)| {
            let group = GROUPS.iter().position(|(g, _)| *g == m)?;
            let series = series.iter().position(|s| s.scenario == mesh)?;
            Some(Mark {
                group,
                series,
                level: factor * ratio(reference, m)?,
                label: format!("{factor}x {}", reference.name()),
            })
        })
        .collect();
    ChartData {
        title: title.to_owned(),
        series,
        marks,
        panels: Vec::new(),
    }
}

/// The whole chart of a run: the ratio chart and every panel of the scenarios that ran.
pub fn of_results(results: &Results) -> ChartData {
    let mut data = prepare(&title(&results.started_utc), &figures_of(results));
    for p in results.scale.iter().flat_map(panel::scale_panels) {
        data.panel(p);
    }
    for p in crate::report::east_west_panels(&results.east_west) {
        data.panel(p);
    }
    for p in results
        .control
        .iter()
        .flat_map(crate::report::control::chart::panels)
    {
        data.panel(p);
    }
    data
}

/// The figures of a run in progress.
pub fn figures_of(results: &Results) -> Figures {
    results
        .scenarios
        .iter()
        .map(|r| {
            let values = Metric::ALL
                .into_iter()
                .filter_map(|m| Some((m, r.get(m).value()?)))
                .collect();
            (r.scenario, values)
        })
        .collect()
}

/// The start time and the figures of a results file (`bench/results/*.json`).
pub fn figures_from_json(json: &serde_json::Value) -> Result<(String, Figures)> {
    let key = |v: serde_json::Result<serde_json::Value>| {
        v.ok().and_then(|v| v.as_str().map(str::to_owned))
    };
    let scenarios = json["scenarios"]
        .as_array()
        .context("no `scenarios` in the results")?;
    let mut figures = Figures::new();
    for s in scenarios {
        let name = s["scenario"]
            .as_str()
            .context("a scenario without its key")?;
        let scenario = Scenario::ALL
            .into_iter()
            .find(|x| key(serde_json::to_value(x)).as_deref() == Some(name))
            .with_context(|| format!("unknown scenario {name:?}"))?;
        let values = Metric::ALL
            .into_iter()
            .filter_map(|m| {
                let k = key(serde_json::to_value(m))?;
                Some((m, s["figures"][k.as_str()]["value"].as_f64()?))
            })
            .collect();
        figures.insert(scenario, values);
    }
    let started = json["started_utc"].as_str().unwrap_or("?").to_owned();
    Ok((started, figures))
}

/// The chart's title for a run started at `started_utc`.
pub fn title(started_utc: &str) -> String {
    format!("meshd bench, {started_utc}: every path relative to direct in its lab")
}

/// Reads a results file and writes its chart.
pub fn redraw(json: &Path, svg: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let (started, figures) = figures_from_json(&value)?;
    let mut data = prepare(&title(&started), &figures);
    for p in panel::scale_panels_from_json(&value) {
        data.panel(p);
    }
    write(svg, &data)
}

/// Writes the chart to `svg`.
pub fn write(svg: &Path, data: &ChartData) -> Result<()> {
    std::fs::write(svg, draw_svg(data)?).with_context(|| format!("writing {}", svg.display()))
}

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 540;
const LEGEND: u32 = 240;
/// The height of each panel under the ratio chart.
const PANEL_HEIGHT: u32 = 360;
const FONT: &str = "sans-serif";

fn color(s: Scenario) -> RGBColor {
    match s {
        Scenario::MeshTc => RGBColor(31, 119, 180),
        Scenario::MeshLocal => RGBColor(120, 180, 225),
        Scenario::MeshXdp => RGBColor(44, 160, 44),
        Scenario::Userspace => RGBColor(255, 127, 14),
        Scenario::UserspaceXdp => RGBColor(255, 190, 120),
        Scenario::Iptables => RGBColor(214, 39, 40),
        Scenario::IptablesXdp => RGBColor(245, 150, 150),
        Scenario::Direct | Scenario::DirectXdp => RGBColor(90, 90, 90),
        Scenario::DirectVxlan => RGBColor(150, 150, 150),
        Scenario::DirectNative => RGBColor(60, 60, 60),
        Scenario::MeshTcNative => RGBColor(148, 103, 189),
    }
}

/// Where bar `i` of `n` in group `g` starts and ends on the x axis (each group is 1 wide).
fn bar_x(g: usize, i: usize, n: usize) -> (f64, f64) {
    #[allow(clippy::cast_precision_loss)] // a handful of bars
    let (g, i, n) = (g as f64, i as f64, n.max(1) as f64);
    let w = 0.84 / n;
    let x0 = g + 0.08 + i * w;
    (x0 + w * 0.08, x0 + w * 0.92)
}

/// Text of `px` pixels (plotters draws a font of size s at s / 1.24 px).
fn text_style(px: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, px * 1.24).into_font()).color(&BLACK)
}

/// The SVG of the chart.
pub fn draw_svg(data: &ChartData) -> Result<String> {
    let mut svg = String::new();
    {
        // A run without lab scenarios (the scale scenario alone) has panels only.
        let main = if data.series.is_empty() && !data.panels.is_empty() {
            0
        } else {
            HEIGHT
        };
        let count = u32::try_from(data.panels.len()).unwrap_or(u32::MAX);
        let height = main + PANEL_HEIGHT.saturating_mul(count);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow!("drawing the chart: {e}"))?;
        let (top, mut rest) = root.split_vertically(main);
        if main > 0 {
            draw(&top, data).map_err(|e| anyhow!("drawing the chart: {e}"))?;
        }
        for p in &data.panels {
            let (area, below) = rest.split_vertically(PANEL_HEIGHT);
            panel::draw(&area, p, LEGEND)
                .map_err(|e| anyhow!("drawing panel {:?}: {e}", p.title))?;
            rest = below;
        }
        root.present()
            .map_err(|e| anyhow!("drawing the chart: {e}"))?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw(root: &Area<'_>, data: &ChartData) -> DrawResult {
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND);
    let top = (data.max() * 1.12 * 4.0).ceil() / 4.0;
    #[allow(clippy::cast_precision_loss)]
    let groups = GROUPS.len() as f64;
    let mut chart = ChartBuilder::on(&plot)
        .caption(&data.title, text_style(16.0))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..groups, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ratio to direct of the same lab (higher is better)")
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style(text_style(12.0))
        .axis_desc_style(text_style(13.0))
        .y_labels(12)
        .max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    for (g, (_, label)) in GROUPS.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            *label,
            (x, y + 10),
            text_style(14.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    let n = data.series.len();
    let value_style = text_style(11.0)
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, s) in data.series.iter().enumerate() {
        for (g, r) in s.ratios.iter().enumerate() {
            let (x0, x1) = bar_x(g, i, n);
            let mid = f64::midpoint(x0, x1);
            let Some(r) = *r else {
                chart.draw_series(std::iter::once(Text::new(
                    "N/A",
                    (mid, 0.0),
                    value_style.clone(),
                )))?;
                continue;
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x1, r)],
                color(s.scenario).filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{r:.2}"),
                (mid, r + top * 0.01),
                value_style.clone(),
            )))?;
        }
    }
    chart.draw_series(std::iter::once(DashedPathElement::new(
        vec![(0.0, 1.0), (groups, 1.0)],
        6,
        4,
        BLACK.stroke_width(1),
    )))?;
    for m in &data.marks {
        let (x0, x1) = bar_x(m.group, m.series, n);
        let pad = (x1 - x0) * 0.35;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x0 - pad, m.level), (x1 + pad, m.level)],
            BLACK.stroke_width(3),
        )))?;
    }
    draw_legend(&legend, data)
}

fn draw_legend(area: &Area<'_>, data: &ChartData) -> DrawResult {
    let row = 24;
    let mut y = 48;
    let label = text_style(13.0).pos(Pos::new(HPos::Left, VPos::Center));
    for s in &data.series {
        area.draw(&Rectangle::new(
            [(8, y - 7), (22, y + 7)],
            color(s.scenario).filled(),
        ))?;
        area.draw(&Text::new(s.scenario.name(), (30, y), label.clone()))?;
        y += row;
    }
    y += row / 2;
    area.draw(&DashedPathElement::new(
        vec![(4, y), (26, y)],
        6,
        4,
        BLACK.stroke_width(1),
    ))?;
    area.draw(&Text::new("direct = 1", (30, y), label.clone()))?;
    y += row;
    area.draw(&PathElement::new(
        vec![(4, y), (26, y)],
        BLACK.stroke_width(3),
    ))?;
    area.draw(&Text::new("target of a mesh bar:", (30, y), label.clone()))?;
    let mut seen = Vec::new();
    for m in &data.marks {
        if !seen.contains(&&m.label) {
            seen.push(&m.label);
            y += row - 6;
            area.draw(&Text::new(m.label.as_str(), (42, y), label.clone()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        use Metric::{ConnPerSec, Pps64, Tcp1, Tcp4};
        let f = |v: [(Metric, f64); 4]| v.into_iter().collect::<BTreeMap<_, _>>();
        [
            (
                Scenario::Direct,
                f([
                    (Tcp1, 10.0),
                    (Tcp4, 16.0),
                    (ConnPerSec, 16000.0),
                    (Pps64, 128.0),
                ]),
            ),
            (
                Scenario::MeshTc,
                f([
                    (Tcp1, 9.5),
                    (Tcp4, 12.0),
                    (ConnPerSec, 8000.0),
                    (Pps64, 64.0),
                ]),
            ),
            (Scenario::Userspace, {
                let mut u = f([(Tcp1, 4.0), (Tcp4, 6.0), (ConnPerSec, 5000.0), (Pps64, 0.0)]);
                u.remove(&Pps64);
                u
            }),
            (
                Scenario::DirectXdp,
                f([
                    (Tcp1, 2.0),
                    (Tcp4, 2.0),
                    (ConnPerSec, 10000.0),
                    (Pps64, 100.0),
                ]),
            ),
            (
                Scenario::MeshXdp,
                f([
                    (Tcp1, 1.5),
                    (Tcp4, 1.0),
                    (ConnPerSec, 9000.0),
                    (Pps64, 60.0),
                ]),
            ),
            (
                Scenario::IptablesXdp,
                f([
                    (Tcp1, 1.0),
                    (Tcp4, 1.0),
                    (ConnPerSec, 5000.0),
                    (Pps64, 80.0),
                ]),
            ),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn bars_are_ratios_to_direct_of_the_same_lab() {
        let d = prepare("t", &figures());
        let names: Vec<&str> = d.series.iter().map(|s| s.scenario.name()).collect();
        assert_eq!(
            names,
            ["mesh-tc", "userspace", "mesh-xdp", "iptables (xdp lab)"]
        );
        assert_eq!(
            d.series[0].ratios,
            [Some(0.95), Some(0.75), Some(0.5), Some(0.5)]
        );
        // UDP through HAProxy is not measured: no bar.
        assert_eq!(d.series[1].ratios[3], None);
        // The xdp lab is divided by its own direct.
        assert_eq!(
            d.series[2].ratios,
            [Some(0.75), Some(0.5), Some(0.9), Some(0.6)]
        );
    }

    #[test]
    fn targets_are_levels_over_the_mesh_bars() {
        let d = prepare("t", &figures());
        let marks: Vec<(usize, usize, f64, &str)> = d
            .marks
            .iter()
            .map(|m| {
                (
                    m.group,
                    m.series,
                    (m.level * 1000.0).round() / 1000.0,
                    m.label.as_str(),
                )
            })
            .collect();
        assert_eq!(
            marks,
            [
                (0, 0, 0.9, "0.9x direct"),
                (1, 0, 0.9, "0.9x direct"),
                // 2 x userspace's 5000 / 16000.
                (2, 0, 0.625, "2x userspace"),
                // userspace (xdp lab) and mesh-local did not run: no mark.
                (2, 2, 0.75, "1.5x iptables (xdp lab)"),
                (3, 2, 1.2, "1.5x iptables (xdp lab)"),
            ]
        );
        assert!((d.max() - 1.2).abs() < 1e-9);
    }

    #[test]
    fn figures_are_read_back_from_a_results_file() {
        let json = serde_json::json!({
            "started_utc": "2026-11-23T14:58:25Z",
            "scenarios": [
                {"scenario": "direct", "figures": {"tcp_1_stream_gbit_s": {"value": 10.0},
                    "new_conn_per_s": {"failed": "wrk: timeout"}}},
                {"scenario": "mesh-xdp", "figures": {"udp_64b_received_kpps": {"value": 58.1}}},
            ],
        });
        let (started, f) = figures_from_json(&json).unwrap();
        assert_eq!(started, "2026-11-23T14:58:25Z");
        assert_eq!(f[&Scenario::Direct], BTreeMap::from([(Metric::Tcp1, 10.0)]));
        assert_eq!(
            f[&Scenario::MeshXdp],
            BTreeMap::from([(Metric::Pps64, 58.1)])
        );
        let bad = serde_json::json!({"scenarios": [{"scenario": "nope", "figures": {}}]});
        assert!(figures_from_json(&bad).is_err());
    }

    #[test]
    fn the_svg_names_every_scenario_and_group() {
        let svg = draw_svg(&prepare(&title("2026-11-23T14:58:25Z"), &figures())).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for name in [
            "mesh-tc",
            "userspace",
            "mesh-xdp",
            "iptables (xdp lab)",
            "direct = 1",
        ] {
            assert!(
                svg.contains(&format!("\n{name}\n</text>")),
                "{name} missing"
            );
        }
        for (_, group) in GROUPS {
            assert!(svg.contains(group), "{group} missing");
        }
        assert!(svg.contains("2026-11-23T14:58:25Z") && svg.contains("N/A"));
    }
}
