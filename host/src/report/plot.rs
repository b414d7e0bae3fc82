//! Minimal SVG line plots (named series over steps), so a run directory can be looked at in a
//! browser without any plotting stack.

use std::fmt::Write;

/// Colours of the series, in order.
const COLOURS: [&str; 4] = ["#1f5fbf", "#e08a00", "#2a9d3a", "#8e44ad"];

/// An SVG line chart of named series of `(x, y)` points over steps with a title, axis ranges, a
/// legend and an optional horizontal reference line (the latency target).
pub fn line_svg(
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    reference: Option<f64>,
) -> String {
    chart_svg(title, "step", y_label, series, reference, false)
}

/// An SVG scatter plot of named series of `(x, y)` points (one dot each) with a legend and an
/// optional vertical reference line at `reference_x` (the latency target on a latency axis).
pub fn scatter_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    reference_x: Option<f64>,
) -> String {
    chart_svg(title, x_label, y_label, series, reference_x, true)
}

/// The chart behind both: lines, or dots with a vertical reference line.
fn chart_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    reference: Option<f64>,
    dots: bool,
) -> String {
    let (w, h, ml, mr, mt, mb) = (640.0, 320.0, 70.0, 20.0, 30.0, 40.0);
    let finite: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in &finite {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    match reference {
        Some(r) if dots => {
            x0 = x0.min(r);
            x1 = x1.max(r);
        }
        Some(r) => {
            y0 = y0.min(r);
            y1 = y1.max(r);
        }
        None => {}
    }
    if finite.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = 0.05 * (y1 - y0);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let xpad = if dots { 0.05 * (x1 - x0) } else { 0.0 };
    let (x0, x1) = (x0 - xpad, x1 + xpad);
    let sx = |x: f64| ml + (x - x0) / (x1 - x0) * (w - ml - mr);
    let sy = |y: f64| h - mb - (y - y0) / (y1 - y0) * (h - mt - mb);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="18" text-anchor="middle" font-size="14">{}</text>
<line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{}" stroke="black"/>
"#,
        w / 2.0,
        escape(title),
        h - mb,
        w - mr,
        h - mb,
        h - mb
    );
    for i in 0..=4 {
        let fy = y0 + (y1 - y0) * f64::from(i) / 4.0;
        let fx = x0 + (x1 - x0) * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>"##,
            ml - 6.0,
            sy(fy) + 4.0,
            tick(fy),
            sy(fy),
            w - mr,
            sy(fy)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            sx(fx),
            h - mb + 16.0,
            if dots { tick(fx) } else { format!("{fx:.0}") },
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        (ml + w - mr) / 2.0,
        h - 6.0,
        escape(x_label),
        h / 2.0,
        h / 2.0,
        escape(y_label)
    );
    if let (Some(r), true) = (reference, dots) {
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{mt}" x2="{x}" y2="{}" stroke="#c00" stroke-dasharray="4 3"/>"##,
            h - mb,
            x = sx(r)
        );
    } else if let Some(r) = reference {
        let _ = writeln!(
            s,
            r##"<line x1="{ml}" y1="{y}" x2="{}" y2="{y}" stroke="#c00" stroke-dasharray="4 3"/>"##,
            w - mr,
            y = sy(r)
        );
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if dots {
            for &(x, y) in points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}" fill-opacity="0.75"/>"#,
                    sx(x),
                    sy(y)
                );
            }
        } else {
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{}"/>"#,
                path.join(" ")
            );
        }
        if series.len() > 1 {
            let ly = mt + 14.0 * i as f64 + 6.0;
            let _ = writeln!(
                s,
                r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
                w - mr - 120.0,
                w - mr - 100.0,
                w - mr - 95.0,
                ly + 4.0,
                escape(name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn plots_are_svg_with_every_point() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), f64::from(i * i))).collect();
        let s = super::line_svg("T(α) <ms>", "ms", &[("T", pts.clone())], Some(40.0));
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("T(α) &lt;ms&gt;"));
        let poly = s.lines().find(|l| l.starts_with("<polyline")).unwrap();
        assert_eq!(poly.matches(',').count(), 10);
        assert!(s.contains("stroke-dasharray"));
        let two = super::line_svg("r", "r", &[("reward", pts.clone()), ("baseline", pts)], None);
        assert_eq!(two.matches("<polyline").count(), 2);
        assert!(two.contains(">baseline</text>"));
        let dots = super::scatter_svg(
            "acc vs T",
            "ms",
            "acc",
            &[("tunas", vec![(80.0, 0.8), (85.0, 0.82)]), ("random", vec![(83.0, 0.79)])],
            Some(84.0),
        );
        assert_eq!(dots.matches("<circle").count(), 3);
        assert!(!dots.contains("<polyline") && dots.contains("stroke-dasharray"));
    }
}
