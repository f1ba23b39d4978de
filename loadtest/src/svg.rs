//! A few SVG drawing primitives and axis scales, enough for the two charts of the report, written by hand to keep
//! the dependency list short.

use std::fmt::Write as _;

/// Colours of the targets, in target order (repeats after four).
pub const PALETTE: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The colour of target `index`.
pub fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// Escapes text for SVG content and attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG document being drawn.
#[derive(Debug)]
pub struct Svg {
    width: u32,
    height: u32,
    body: String,
}

impl Svg {
    /// An empty white canvas.
    pub fn new(width: u32, height: u32) -> Svg {
        let mut svg = Svg {
            width,
            height,
            body: String::new(),
        };
        svg.rect(0.0, 0.0, f64::from(width), f64::from(height), "white", None);
        svg
    }

    /// A straight line; `dash` is an SVG dash array such as `"6 3"`.
    pub fn line(
        &mut self,
        from: (f64, f64),
        to: (f64, f64),
        stroke: &str,
        width: f64,
        dash: Option<&str>,
    ) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="{width}"{}/>"#,
            from.0,
            from.1,
            to.0,
            to.1,
            dash_attribute(dash)
        );
    }

    /// An open polyline through `points` (nothing for fewer than two points, a dot for one).
    pub fn polyline(
        &mut self,
        points: &[(f64, f64)],
        stroke: &str,
        width: f64,
        dash: Option<&str>,
    ) {
        match points {
            [] => {}
            [(x, y)] => {
                let _ = writeln!(
                    self.body,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="{:.1}" fill="{stroke}"/>"#,
                    width * 1.5
                );
            }
            _ => {
                let coordinates: Vec<String> = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                let _ = writeln!(
                    self.body,
                    r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}"{}/>"#,
                    coordinates.join(" "),
                    dash_attribute(dash)
                );
            }
        }
    }

    /// A rectangle, filled, optionally outlined.
    pub fn rect(
        &mut self,
        x: f64,
        y: f64,
        width: f64,
        height: f64,
        fill: &str,
        stroke: Option<&str>,
    ) {
        let stroke = stroke.map_or(String::new(), |stroke| format!(r#" stroke="{stroke}""#));
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}"{stroke}/>"#,
            width.max(0.0),
            height.max(0.0)
        );
    }

    /// Text; `anchor` is `start`, `middle` or `end`.
    pub fn text(&mut self, x: f64, y: f64, text: &str, size: u32, anchor: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-family="sans-serif" font-size="{size}" text-anchor="{anchor}">{}</text>"#,
            escape(text)
        );
    }

    /// Text rotated by -90° around its anchor (for a vertical axis title).
    pub fn vertical_text(&mut self, x: f64, y: f64, text: &str, size: u32) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-family="sans-serif" font-size="{size}" text-anchor="middle" transform="rotate(-90 {x:.1} {y:.1})">{}</text>"#,
            escape(text)
        );
    }

    /// The finished document.
    pub fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n{}</svg>\n",
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

fn dash_attribute(dash: Option<&str>) -> String {
    dash.map_or(String::new(), |dash| {
        format!(r#" stroke-dasharray="{dash}""#)
    })
}

/// A logarithmic scale over whole decades, mapping values to pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogScale {
    low_exponent: i32,
    high_exponent: i32,
    pixel_low: f64,
    pixel_high: f64,
}

impl LogScale {
    /// The smallest range of whole decades that holds every positive value of `values` (1 to 10 when none),
    /// mapped onto `pixel_low..pixel_high` (which may run backwards, as a vertical axis does).
    pub fn covering(
        values: impl IntoIterator<Item = f64>,
        pixel_low: f64,
        pixel_high: f64,
    ) -> LogScale {
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for value in values
            .into_iter()
            .filter(|value| *value > 0.0 && value.is_finite())
        {
            low = low.min(value);
            high = high.max(value);
        }
        let (low_exponent, high_exponent) = if low.is_finite() {
            let low_exponent = low.log10().floor() as i32;
            let high_exponent = (high.log10().ceil() as i32).max(low_exponent + 1);
            (low_exponent, high_exponent)
        } else {
            (0, 1)
        };
        LogScale {
            low_exponent,
            high_exponent,
            pixel_low,
            pixel_high,
        }
    }

    /// The pixel of `value` (values at or below zero go to the low end).
    pub fn pixel(&self, value: f64) -> f64 {
        let low = f64::from(self.low_exponent);
        let span = f64::from(self.high_exponent) - low;
        let fraction = if value > 0.0 {
            ((value.log10() - low) / span).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.pixel_low + fraction * (self.pixel_high - self.pixel_low)
    }

    /// The decade ticks: 10^low … 10^high.
    pub fn ticks(&self) -> Vec<f64> {
        (self.low_exponent..=self.high_exponent)
            .map(|exponent| 10f64.powi(exponent))
            .collect()
    }
}

/// A tick label for a millisecond value: `0.1`, `1`, `10`, … `1000`, `10 s`.
pub fn ms_label(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_scale_spans_whole_decades() {
        let scale = LogScale::covering([3.0, 250.0, -1.0, f64::NAN], 0.0, 300.0);
        assert_eq!(scale.ticks(), vec![1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(scale.pixel(1.0), 0.0);
        assert!((scale.pixel(10.0) - 100.0).abs() < 1e-9);
        assert_eq!(scale.pixel(1000.0), 300.0);
        assert_eq!(scale.pixel(0.0), 0.0);
        assert_eq!(scale.pixel(1e9), 300.0);
        // Backwards (a y axis): 10 ms is one third of the way up.
        let y = LogScale::covering([1.0, 1000.0], 300.0, 0.0);
        assert!((y.pixel(10.0) - 200.0).abs() < 1e-9);
        // No data: one decade.
        assert_eq!(LogScale::covering([], 0.0, 1.0).ticks(), vec![1.0, 10.0]);
        // One value on a decade still spans a decade.
        assert_eq!(
            LogScale::covering([100.0], 0.0, 1.0).ticks(),
            vec![100.0, 1000.0]
        );
    }

    #[test]
    fn labels_and_escaping() {
        assert_eq!(ms_label(0.1), "0.1");
        assert_eq!(ms_label(100.0), "100");
        assert_eq!(ms_label(100_000.0), "100 s");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn a_document_is_well_formed() {
        let mut svg = Svg::new(100, 50);
        svg.line((0.0, 0.0), (10.0, 10.0), "black", 1.0, Some("4 2"));
        svg.polyline(&[(1.0, 2.0), (3.0, 4.0)], "red", 2.0, None);
        svg.polyline(&[(1.0, 2.0)], "red", 2.0, None);
        svg.text(5.0, 5.0, "<median>", 10, "start");
        let text = svg.finish();
        assert!(text
            .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100\" height=\"50\""));
        assert!(text.ends_with("</svg>\n"));
        assert!(text.contains("stroke-dasharray=\"4 2\""));
        assert!(text.contains("points=\"1.0,2.0 3.0,4.0\""));
        assert!(text.contains("<circle"));
        assert!(text.contains("&lt;median&gt;"));
    }
}
