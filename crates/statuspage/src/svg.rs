//! A small server-side SVG chart renderer: line charts (a value over time) and bar charts (one
//! bar per item, coloured by class). Pure: data in, SVG text out; no scripts, no external
//! assets, so the page works without JavaScript and behind strict CSP.

use std::fmt::Write;

pub const WIDTH: f64 = 560.0;
pub const HEIGHT: f64 = 200.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One point of a line chart: x (seconds since the epoch), y.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// One bar of a bar chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// CSS class suffix (`ok`, `bad`), coloured by the page's style.
    pub class: &'static str,
    /// Tooltip.
    pub title: String,
}

/// Escapes text for SVG/HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// "Nice" axis maximum: 1, 2 or 5 times a power of ten, at least `max`.
pub fn nice_max(max: f64) -> f64 {
    if !(max.is_finite()) || max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= max {
            return m * p;
        }
    }
    10.0 * p
}

fn open(title: &str, out: &mut String) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
}

fn y_axis(max: f64, fmt: &dyn Fn(f64) -> String, out: &mut String) {
    let plot_h = HEIGHT - TOP - BOTTOM;
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = TOP + plot_h - plot_h * i as f64 / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{tx}" y="{ty:.1}" font-size="10" text-anchor="end" fill="#555">{label}</text>"##,
            x2 = WIDTH - RIGHT,
            tx = LEFT - 4.0,
            ty = y + 3.0,
            label = esc(&fmt(v))
        );
    }
}

fn empty(title: &str, out: &mut String) {
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#777">no data yet</text>"##,
        WIDTH / 2.0,
        HEIGHT / 2.0
    );
    let _ = title;
}

/// A line chart of `points` (sorted by x or not). `fmt_y` labels the y axis, `fmt_x` the
/// first and last x.
pub fn line_chart(
    title: &str,
    points: &[Point],
    fmt_y: &dyn Fn(f64) -> String,
    fmt_x: &dyn Fn(f64) -> String,
) -> String {
    let mut out = String::new();
    open(title, &mut out);
    let mut pts: Vec<Point> = points.iter().copied().filter(|p| p.x.is_finite() && p.y.is_finite()).collect();
    pts.sort_by(|a, b| a.x.total_cmp(&b.x));
    if pts.is_empty() {
        y_axis(1.0, fmt_y, &mut out);
        empty(title, &mut out);
        out.push_str("</svg>");
        return out;
    }
    let max = nice_max(pts.iter().map(|p| p.y).fold(0.0, f64::max));
    y_axis(max, fmt_y, &mut out);
    let (x0, x1) = (pts[0].x, pts[pts.len() - 1].x);
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| if x1 > x0 { LEFT + (x - x0) / span * plot_w } else { LEFT + plot_w / 2.0 };
    let sy = |y: f64| TOP + plot_h - (y.max(0.0) / max) * plot_h;
    let path: Vec<String> = pts.iter().map(|p| format!("{:.1},{:.1}", sx(p.x), sy(p.y))).collect();
    let _ = write!(out, r##"<polyline fill="none" stroke="#2f6fb3" stroke-width="2" points="{}"/>"##, path.join(" "));
    for p in &pts {
        let _ = write!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#2f6fb3"><title>{}: {}</title></circle>"##,
            sx(p.x),
            sy(p.y),
            esc(&fmt_x(p.x)),
            esc(&fmt_y(p.y))
        );
    }
    let by = HEIGHT - 8.0;
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="{by}" font-size="10" fill="#555">{}</text><text x="{}" y="{by}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
        esc(&fmt_x(x0)),
        WIDTH - RIGHT,
        esc(&fmt_x(x1))
    );
    out.push_str("</svg>");
    out
}

/// A bar chart, one bar per item in the given order.
pub fn bar_chart(title: &str, bars: &[Bar], fmt_y: &dyn Fn(f64) -> String) -> String {
    let mut out = String::new();
    open(title, &mut out);
    let bars: Vec<&Bar> = bars.iter().filter(|b| b.value.is_finite()).collect();
    if bars.is_empty() {
        y_axis(1.0, fmt_y, &mut out);
        empty(title, &mut out);
        out.push_str("</svg>");
        return out;
    }
    let max = nice_max(bars.iter().map(|b| b.value).fold(0.0, f64::max));
    y_axis(max, fmt_y, &mut out);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / bars.len() as f64;
    let w = (slot * 0.7).max(1.0);
    for (i, b) in bars.iter().enumerate() {
        let h = (b.value.max(0.0) / max * plot_h).max(1.0);
        let x = LEFT + i as f64 * slot + (slot - w) / 2.0;
        let _ = write!(
            out,
            r#"<rect class="bar-{}" x="{x:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}"><title>{}</title></rect>"#,
            b.class,
            TOP + plot_h - h,
            esc(&b.title)
        );
    }
    let by = HEIGHT - 8.0;
    let first = &bars[0].label;
    let last = &bars[bars.len() - 1].label;
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="{by}" font-size="10" fill="#555">{}</text><text x="{}" y="{by}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
        esc(first),
        WIDTH - RIGHT,
        esc(last)
    );
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: f64) -> String {
        format!("{v}")
    }

    #[test]
    fn nice_max_rounds_up_to_1_2_5() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(-3.0), 1.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
        assert_eq!(nice_max(1.0), 1.0);
        assert_eq!(nice_max(1.3), 2.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(0.04), 0.05);
        assert_eq!(nice_max(1234.0), 2000.0);
    }

    #[test]
    fn line_chart_scales_points_into_the_plot() {
        let pts = [Point { x: 200.0, y: 10.0 }, Point { x: 100.0, y: 0.0 }, Point { x: 300.0, y: 5.0 }];
        let svg = line_chart("size", &pts, &num, &num);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(svg.ends_with("</svg>"));
        // sorted by x: first point (100, 0) at the bottom left, (200, 10) at the top middle.
        assert!(svg.contains(r#"points="64.0,172.0 306.0,12.0 548.0,92.0""#), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">100</text>") && svg.contains(">300</text>"));
    }

    #[test]
    fn single_point_and_empty_charts_render() {
        let svg = line_chart("one", &[Point { x: 5.0, y: 2.0 }], &num, &num);
        assert!(svg.contains(r#"points="306.0,12.0""#), "{svg}");
        let svg = line_chart("none", &[], &num, &num);
        assert!(svg.contains("no data yet") && svg.ends_with("</svg>"));
        let svg = bar_chart("none", &[], &num);
        assert!(svg.contains("no data yet"));
    }

    #[test]
    fn bar_chart_has_one_rect_per_bar_with_class_and_escaped_title() {
        let bars = vec![
            Bar { label: "a".into(), value: 4.0, class: "ok", title: "backup #1 <4s>".into() },
            Bar { label: "b".into(), value: 2.0, class: "bad", title: "t".into() },
        ];
        let svg = bar_chart("durations", &bars, &num);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains(r#"class="bar-ok" x="100.3" y="44.0" width="169.4" height="128.0""#), "{svg}");
        assert!(svg.contains(r#"class="bar-bad""#));
        assert!(svg.contains("backup #1 &lt;4s&gt;"));
        assert!(!svg.contains("<4s>"));
    }

    #[test]
    fn titles_are_escaped() {
        let svg = line_chart("a\"<b>&", &[], &num, &num);
        assert!(svg.contains("aria-label=\"a&quot;&lt;b&gt;&amp;\""), "{svg}");
    }
}
