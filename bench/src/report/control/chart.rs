//! The control plane's chart (an SVG): on the left, API calls acknowledged per second with 1
//! and 3 managers; on the right, the timings in seconds (lower is better) with swarmkit's
//! published scheduler figure beside meshd's. Preparing the bars is pure ([`bars`]); drawing is
//! [`draw_svg`].

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Control, SWARMKIT_SCHEDULE_S, Throughput};

/// One bar: its label, its value (None: not measured), whether it is a reference (drawn grey).
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub reference: bool,
}

/// The two panels' bars: throughput (per second) and timings (seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Bars {
    pub throughput: Vec<Bar>,
    pub timings: Vec<Bar>,
}

/// The bars of a run's control figures.
pub fn bars(c: &Control) -> Bars {
    let bar = |label: String, value: Option<f64>| Bar {
        label,
        value,
        reference: false,
    };
    let rate = |what: &str, runs: &[Throughput]| -> Vec<Bar> {
        runs.iter()
            .map(|t| {
                let m = if t.managers == 1 {
                    "manager"
                } else {
                    "managers"
                };
                bar(format!("{what}, {} {m}", t.managers), t.per_s.value())
            })
            .collect()
    };
    let mut throughput = rate("service create", &c.creates);
    throughput.extend(rate("secret create", &c.writes));
    let mut timings = Vec::new();
    if let Some(s) = &c.create_to_serving {
        timings.push(bar(
            format!("{} creates -> all serving", s.services),
            s.all_serving_s.value(),
        ));
    }
    if let Some(f) = &c.failover {
        timings.push(bar("failover, median".to_owned(), f.median_s.value()));
        timings.push(bar("failover, max".to_owned(), f.max_s.value()));
    }
    if let Some(b) = &c.big_lab {
        timings.push(bar(
            format!("death seen by all, {} nodes", b.nodes),
            b.all_seen_dead_s.value(),
        ));
    }
    if let Some(s) = &c.scheduler {
        timings.push(bar("scheduler 10k tasks".to_owned(), Some(s.seconds)));
        timings.push(Bar {
            label: "swarmkit (published)".to_owned(),
            value: Some(SWARMKIT_SCHEDULE_S),
            reference: true,
        });
    }
    Bars {
        throughput,
        timings,
    }
}

/// The same bars as two panels of the data path chart (`chart::of_results`), so a run with
/// both (`--scale`) shows them in one picture.
pub fn panels(c: &Control) -> Vec<crate::panel::Panel> {
    let b = bars(c);
    let panel = |title: &str, y: &str, bars: &[Bar]| {
        crate::panel::Panel::new(title, y, bars.iter().map(|b| b.label.clone()).collect())
            .series("meshd", bars.iter().map(|b| b.value).collect())
    };
    [
        panel(
            "control plane: calls acknowledged",
            "per second (higher is better)",
            &b.throughput,
        ),
        panel(
            "control plane: timings",
            "seconds (lower is better)",
            &b.timings,
        ),
    ]
    .into_iter()
    .filter(|p| !p.groups.is_empty())
    .collect()
}

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 600;
const FONT: &str = "sans-serif";

fn text_style(px: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, px * 1.24).into_font()).color(&BLACK)
}

/// The SVG of the chart.
pub fn draw_svg(title: &str, bars: &Bars) -> Result<String> {
    let mut svg = String::new();
    {
        let canvas = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        canvas
            .fill(&WHITE)
            .map_err(|e| anyhow!("drawing the control chart: {e}"))?;
        let root = canvas
            .titled(title, text_style(16.0))
            .map_err(|e| anyhow!("drawing the control chart: {e}"))?;
        let (left, right) = root.split_horizontally(WIDTH / 2);
        panel(
            (&canvas, &left),
            "acknowledged per second (higher is better)",
            &bars.throughput,
            RGBColor(31, 119, 180),
            0,
        )
        .map_err(|e| anyhow!("drawing the control chart: {e}"))?;
        panel(
            (&canvas, &right),
            "seconds (lower is better)",
            &bars.timings,
            RGBColor(44, 160, 44),
            2,
        )
        .map_err(|e| anyhow!("drawing the control chart: {e}"))?;
        canvas
            .present()
            .map_err(|e| anyhow!("drawing the control chart: {e}"))?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Vertical bars in `area` with their values over them and their labels under them (rotated,
/// drawn on `canvas`, the whole picture, whose coordinates `backend_coord` gives).
fn panel(
    (canvas, area): (&Area<'_>, &Area<'_>),
    y_desc: &str,
    bars: &[Bar],
    fill: RGBColor,
    decimals: usize,
) -> DrawResult {
    let top = bars
        .iter()
        .filter_map(|b| b.value)
        .fold(0.0, f64::max)
        .max(f64::EPSILON)
        * 1.15;
    #[expect(clippy::cast_precision_loss, reason = "a handful of bars")]
    let n = bars.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(200)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..n, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .label_style(text_style(12.0))
        .axis_desc_style(text_style(13.0))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    for (i, b) in bars.iter().enumerate() {
        #[expect(clippy::cast_precision_loss, reason = "a handful of bars")]
        let x = i as f64;
        let (lx, ly) = chart.backend_coord(&(x + 0.5, 0.0));
        canvas.draw(&Text::new(
            b.label.clone(),
            (lx, ly + 8),
            text_style(12.0)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))?;
        let Some(v) = b.value else {
            chart.draw_series(std::iter::once(Text::new(
                "N/A",
                (x + 0.5, top * 0.02),
                text_style(11.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
            )))?;
            continue;
        };
        let color = if b.reference {
            RGBColor(150, 150, 150)
        } else {
            fill
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.15, 0.0), (x + 0.85, v)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{v:.decimals$}"),
            (x + 0.5, v + top * 0.01),
            text_style(11.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
        )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{BigLab, CreateToServing, Failover, Scheduler};
    use super::*;
    use crate::report::Figure;

    fn control() -> Control {
        Control {
            creates: vec![
                Throughput::of(1, 16, (200, 0), 1.0, None),
                Throughput::of(3, 16, (0, 5), 1.0, Some("no leader".into())),
            ],
            writes: vec![Throughput::of(1, 16, (300, 0), 1.0, None)],
            create_to_serving: Some(CreateToServing::of(
                2,
                Figure::Value(0.1),
                &[Some(1.0), Some(2.0)],
            )),
            failover: Some(Failover::of(3, vec![Figure::Value(1.5)], String::new())),
            scheduler: Some(Scheduler::of(10_000, 1_000, 0.1, 3)),
            big_lab: Some(BigLab::of(
                (20, 1),
                "n20".into(),
                vec![("n1".into(), Some(3.0))],
                Vec::new(),
            )),
        }
    }

    #[test]
    fn every_figure_is_a_bar_and_a_failed_one_has_no_value() {
        let b = bars(&control());
        let labels: Vec<&str> = b.throughput.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "service create, 1 manager",
                "service create, 3 managers",
                "secret create, 1 manager"
            ]
        );
        assert_eq!(b.throughput[1].value, None);
        let timings: Vec<(&str, Option<f64>)> = b
            .timings
            .iter()
            .map(|b| (b.label.as_str(), b.value))
            .collect();
        assert_eq!(
            timings,
            [
                ("2 creates -> all serving", Some(2.0)),
                ("failover, median", Some(1.5)),
                ("failover, max", Some(1.5)),
                ("death seen by all, 20 nodes", Some(3.0)),
                ("scheduler 10k tasks", Some(0.1)),
                ("swarmkit (published)", Some(1.8)),
            ]
        );
        assert!(b.timings.last().unwrap().reference);
    }

    #[test]
    fn the_svg_names_every_bar() {
        let svg = draw_svg("control", &bars(&control())).unwrap();
        for want in [
            "service create, 1 manager",
            "swarmkit (published)",
            "N/A",
            "200",
        ] {
            assert!(svg.contains(want), "{want:?} missing");
        }
    }
}
