//! The report's two charts: latency over time (per-second median and p99 per target) and latency per class
//! (median bar and p99 whisker per target), both on logarithmic millisecond axes because the classes span four
//! orders of magnitude.

use crate::svg::{colour, ms_label, LogScale, Svg};
use crate::table::Row;
use crate::timeline::Second;

const LEFT: f64 = 70.0;
const RIGHT_LEGEND: f64 = 170.0;
const TOP: f64 = 40.0;

/// Latency over time: one colour per target, median solid and p99 dashed; seconds without successful
/// completions leave a gap. `series` holds (target name, seconds) in target order.
pub fn latency_over_time(title: &str, series: &[(String, Vec<Second>)]) -> String {
    let (width, height) = (960u32, 440u32);
    let bottom = f64::from(height) - 50.0;
    let right = f64::from(width) - RIGHT_LEGEND;
    let mut svg = Svg::new(width, height);
    svg.text(f64::from(width) / 2.0, 24.0, title, 15, "middle");

    let last_second = series
        .iter()
        .flat_map(|(_, seconds)| seconds.iter().map(|second| second.second))
        .max()
        .unwrap_or(0)
        + 1;
    let x = |second: f64| LEFT + second / last_second as f64 * (right - LEFT);
    let values = series.iter().flat_map(|(_, seconds)| {
        seconds
            .iter()
            .flat_map(|second| [second.median_ms, second.p99_ms])
            .flatten()
    });
    let y = LogScale::covering(values, bottom, TOP);

    draw_frame(&mut svg, (LEFT, TOP, right, bottom));
    for tick in y.ticks() {
        let pixel = y.pixel(tick);
        svg.line((LEFT, pixel), (right, pixel), "#dddddd", 1.0, None);
        svg.text(LEFT - 6.0, pixel + 4.0, &ms_label(tick), 11, "end");
    }
    let step = nice_step(last_second);
    let mut tick = 0;
    while tick <= last_second {
        let pixel = x(tick as f64);
        svg.line((pixel, bottom), (pixel, bottom + 5.0), "black", 1.0, None);
        svg.text(pixel, bottom + 18.0, &tick.to_string(), 11, "middle");
        tick += step;
    }
    svg.text(
        (LEFT + right) / 2.0,
        bottom + 38.0,
        "seconds into the measured window",
        12,
        "middle",
    );
    svg.vertical_text(18.0, (TOP + bottom) / 2.0, "latency, ms (log)", 12);

    for (index, (name, seconds)) in series.iter().enumerate() {
        for (pick, dash) in [
            (
                Box::new(|s: &Second| s.median_ms) as Box<dyn Fn(&Second) -> Option<f64>>,
                None,
            ),
            (Box::new(|s: &Second| s.p99_ms), Some("6 4")),
        ] {
            // Split the line where a second has no value.
            let mut segment = Vec::new();
            for second in seconds {
                match pick(second) {
                    Some(ms) => segment.push((x(second.second as f64 + 0.5), y.pixel(ms))),
                    None => {
                        svg.polyline(&segment, colour(index), 1.8, dash);
                        segment.clear();
                    }
                }
            }
            svg.polyline(&segment, colour(index), 1.8, dash);
        }
        let legend_y = TOP + 10.0 + index as f64 * 40.0;
        svg.line(
            (right + 15.0, legend_y),
            (right + 45.0, legend_y),
            colour(index),
            2.0,
            None,
        );
        svg.text(
            right + 50.0,
            legend_y + 4.0,
            &format!("{name} median"),
            12,
            "start",
        );
        svg.line(
            (right + 15.0, legend_y + 16.0),
            (right + 45.0, legend_y + 16.0),
            colour(index),
            2.0,
            Some("6 4"),
        );
        svg.text(
            right + 50.0,
            legend_y + 20.0,
            &format!("{name} p99"),
            12,
            "start",
        );
    }
    svg.finish()
}

/// Latency per class: for every (source class, derivative class) row and the `any` row, one bar per target from
/// the axis to the median and a whisker on to the p99. `targets` gives the target order (and colours).
pub fn latency_by_class(title: &str, rows: &[Row], targets: &[String]) -> String {
    let mut classes: Vec<String> = Vec::new();
    for row in rows {
        let label = class_label(row);
        if !classes.contains(&label) {
            classes.push(label);
        }
    }
    let bar = 11.0;
    let group = bar * targets.len().max(1) as f64 + 12.0;
    let left = 140.0;
    let width = 960u32;
    let right = f64::from(width) - RIGHT_LEGEND;
    let bottom = TOP + group * classes.len().max(1) as f64;
    let height = (bottom + 50.0).ceil() as u32;
    let mut svg = Svg::new(width, height);
    svg.text(f64::from(width) / 2.0, 24.0, title, 15, "middle");

    let values = rows
        .iter()
        .flat_map(|row| [row.median_ms, row.p99_ms])
        .flatten();
    let x = LogScale::covering(values, left, right);
    draw_frame(&mut svg, (left, TOP, right, bottom));
    for tick in x.ticks() {
        let pixel = x.pixel(tick);
        svg.line((pixel, TOP), (pixel, bottom), "#dddddd", 1.0, None);
        svg.text(pixel, bottom + 18.0, &ms_label(tick), 11, "middle");
    }
    svg.text(
        (left + right) / 2.0,
        bottom + 38.0,
        "latency, ms (log): bar = median, whisker = p99",
        12,
        "middle",
    );

    for (class_index, class) in classes.iter().enumerate() {
        let group_top = TOP + class_index as f64 * group + 6.0;
        svg.text(left - 8.0, group_top + group / 2.0, class, 12, "end");
        for (target_index, target) in targets.iter().enumerate() {
            let Some(row) = rows
                .iter()
                .find(|row| &row.target == target && &class_label(row) == class)
            else {
                continue;
            };
            let top = group_top + target_index as f64 * bar;
            let middle = top + bar / 2.0 - 0.5;
            if let Some(median) = row.median_ms {
                svg.rect(
                    left,
                    top,
                    x.pixel(median) - left,
                    bar - 2.0,
                    colour(target_index),
                    None,
                );
                if let Some(p99) = row.p99_ms {
                    svg.line(
                        (x.pixel(median), middle),
                        (x.pixel(p99), middle),
                        "black",
                        1.2,
                        None,
                    );
                    svg.line(
                        (x.pixel(p99), top + 1.0),
                        (x.pixel(p99), top + bar - 3.0),
                        "black",
                        1.2,
                        None,
                    );
                }
            } else {
                svg.text(
                    left + 4.0,
                    middle + 4.0,
                    "no successful request",
                    10,
                    "start",
                );
            }
        }
    }
    for (index, target) in targets.iter().enumerate() {
        let legend_y = TOP + 10.0 + index as f64 * 22.0;
        svg.rect(
            right + 15.0,
            legend_y - 8.0,
            24.0,
            10.0,
            colour(index),
            None,
        );
        svg.text(right + 45.0, legend_y + 1.0, target, 12, "start");
    }
    svg.finish()
}

/// `small / tile`, `any`: the row's class as shown on the chart.
fn class_label(row: &Row) -> String {
    match (row.source, row.derivative) {
        (Some(source), Some(derivative)) => format!("{source} / {derivative}"),
        (Some(source), None) => format!("{source} / any"),
        (None, Some(derivative)) => format!("any / {derivative}"),
        (None, None) => "any".to_string(),
    }
}

fn draw_frame(svg: &mut Svg, (left, top, right, bottom): (f64, f64, f64, f64)) {
    svg.line((left, bottom), (right, bottom), "black", 1.0, None);
    svg.line((left, top), (left, bottom), "black", 1.0, None);
}

/// A tick step that gives at most about ten ticks: 1, 2, 5, 10, 20, 50, …
fn nice_step(span: u64) -> u64 {
    let mut step = 1;
    loop {
        for multiple in [1, 2, 5] {
            if span / (step * multiple) <= 10 {
                return step * multiple;
            }
        }
        step *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::SourceClass;
    use crate::mix::Derivative;
    use crate::stats::Latencies;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(3), 1);
        assert_eq!(nice_step(10), 1);
        assert_eq!(nice_step(11), 2);
        assert_eq!(nice_step(60), 10);
        assert_eq!(nice_step(600), 100);
    }

    #[test]
    fn the_time_chart_has_a_line_per_target_and_statistic() {
        let second = |second, median| Second {
            second,
            successes: 1,
            failures: 0,
            median_ms: median,
            p99_ms: median.map(|m| m * 3.0),
        };
        let series = vec![
            (
                "gateway".to_string(),
                vec![
                    second(0, Some(5.0)),
                    second(1, Some(6.0)),
                    second(2, Some(4.0)),
                ],
            ),
            (
                "baseline".to_string(),
                vec![
                    second(0, Some(50.0)),
                    second(1, None),
                    second(2, Some(40.0)),
                ],
            ),
        ];
        let svg = latency_over_time("t", &series);
        // gateway: two polylines; baseline: a gap splits each statistic into two dots.
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("gateway median") && svg.contains("baseline p99"));
    }

    #[test]
    fn the_class_chart_has_a_bar_per_target_and_class() {
        let row = |target: &str, source, derivative, latencies: Vec<u64>| {
            Row::new(
                target,
                source,
                derivative,
                &Latencies::new(latencies),
                10,
                0,
                1.0,
            )
        };
        let rows = vec![
            row(
                "gateway",
                Some(SourceClass::Small),
                Some(Derivative::Tile),
                vec![1000, 2000],
            ),
            row("gateway", None, None, vec![1000, 2000]),
            row(
                "baseline",
                Some(SourceClass::Small),
                Some(Derivative::Tile),
                vec![],
            ),
            row("baseline", None, None, vec![5000]),
        ];
        let svg = latency_by_class("c", &rows, &["gateway".into(), "baseline".into()]);
        assert!(svg.contains("small / tile"));
        assert!(svg.contains("no successful request"));
        // 3 bars + 2 legend swatches + the background.
        assert_eq!(svg.matches("<rect").count(), 6);
    }
}
