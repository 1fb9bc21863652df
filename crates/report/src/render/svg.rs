//! Hand-written SVG charts: a Kaplan-Meier chart (step curves with censoring
//! marks), stacked bars of norm compliance and the monthly trend. Plain
//! `<path>` and `<text>` elements, no script, no external font or asset.

use std::fmt::Write as _;

use crate::figures::{Curve, Month, NormFigure};
use crate::format::duration;

const WIDTH: f64 = 720.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// Colours that stay apart in print and for common colour blindness.
pub const PALETTE: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#999999",
];

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn open(out: &mut String, height: f64, label: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{}" class="chart">"#,
        escape(label)
    );
}

/// Share still online over time since the notice, one step curve per series;
/// a short vertical tick on a curve marks a URL censored there.
pub fn survival_chart(series: &[(&str, &Curve)]) -> String {
    let height = 300.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - BOTTOM;
    let x_max = series
        .iter()
        .flat_map(|(_, c)| {
            c.steps
                .iter()
                .map(|(t, _)| *t)
                .chain(c.censored.iter().copied())
        })
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let x = |t: f64| LEFT + plot_w * t / x_max;
    let y = |share: f64| TOP + plot_h * (1.0 - share);
    let mut out = String::new();
    open(
        &mut out,
        height,
        "Kaplan-Meier: share still online after the notice",
    );
    axes(&mut out, height, |i| duration(x_max * i as f64 / 4.0));
    for (i, (name, curve)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        // Drawn to a tenth of a unit: of the steps that fall on one tenth,
        // only the last is drawn, the same picture, so that a curve of a
        // million URLs stays a few thousand moves.
        let mut d = format!("M{:.1} {:.1}", x(0.0), y(1.0));
        for (at, share) in last_per_tenth(curve.steps.iter().map(|(t, share)| (x(*t), *share))) {
            let _ = write!(d, " H{:.1} V{:.1}", at, y(share));
        }
        let _ = write!(d, " H{:.1}", x(x_max));
        let _ = write!(
            out,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="2" class="curve"/>"#
        );
        if !curve.censored.is_empty() {
            let mut marks = String::new();
            // Both in time order: the share at each censoring time is the
            // last step's at or before it.
            let mut steps = curve.steps.iter().peekable();
            let mut share = 1.0;
            let mut drawn = None;
            for t in &curve.censored {
                while let Some((_, next)) = steps.next_if(|(at, _)| at <= t) {
                    share = *next;
                }
                let (cx, cy) = (x(*t), y(share));
                let mark = (tenths(cx), tenths(cy));
                if drawn.replace(mark) != Some(mark) {
                    let _ = write!(marks, "M{cx:.1} {:.1} V{:.1} ", cy - 5.0, cy + 5.0);
                }
            }
            let _ = write!(
                out,
                r#"<path d="{}" stroke="{colour}" stroke-width="1.5" class="censored"/>"#,
                marks.trim_end()
            );
        }
        let ly = TOP + 14.0 + 18.0 * i as f64;
        let lx = WIDTH - RIGHT + 12.0;
        let _ = write!(
            out,
            r#"<path d="M{lx} {ly} h18" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            lx + 24.0,
            ly + 4.0,
            escape(&shorten(name, 22))
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">time since the notice (| = still online when last checked)</text></svg>"#,
        LEFT + plot_w / 2.0,
        height - 6.0
    );
    out
}

fn tenths(coordinate: f64) -> i64 {
    (coordinate * 10.0).round() as i64
}

/// Of consecutive `(x, value)` points whose x falls on the same tenth, the
/// last.
fn last_per_tenth(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut kept: Vec<(f64, f64)> = Vec::new();
    for (x, value) in points {
        match kept.last_mut() {
            Some(last) if tenths(last.0) == tenths(x) => *last = (x, value),
            _ => kept.push((x, value)),
        }
    }
    kept
}

/// Axes with a share scale (0 to 100%) on the left and five x ticks.
fn axes(out: &mut String, height: f64, x_label: impl Fn(usize) -> String) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - BOTTOM;
    let bottom = TOP + plot_h;
    let _ = write!(
        out,
        r##"<path d="M{LEFT} {TOP} V{bottom} H{}" fill="none" stroke="#444" class="axis"/>"##,
        LEFT + plot_w
    );
    for i in 0..=4 {
        let share = i as f64 / 4.0;
        let gy = TOP + plot_h * (1.0 - share);
        let _ = write!(
            out,
            r##"<path d="M{LEFT} {gy:.1} H{:.1}" stroke="#ddd" class="grid"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{:.0}%</text>"##,
            LEFT + plot_w,
            LEFT - 4.0,
            gy + 3.0,
            share * 100.0
        );
        let gx = LEFT + plot_w * i as f64 / 4.0;
        let _ = write!(
            out,
            r##"<path d="M{gx:.1} {bottom} v4" stroke="#444"/><text x="{gx:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
            bottom + 15.0,
            escape(&x_label(i))
        );
    }
}

/// Per group, one bar of the first norm: met, missed and undetermined as
/// shares of the group's monitored URLs.
pub fn compliance_chart(bars: &[(&str, &NormFigure)]) -> String {
    let bar_h = 18.0;
    let label_w = 200.0;
    let height = TOP + BOTTOM + (bar_h + 6.0) * bars.len().max(1) as f64;
    let plot_w = WIDTH - label_w - 20.0;
    let mut out = String::new();
    open(&mut out, height, "Norm compliance per group");
    let parts = [
        ("met", "#009e73"),
        ("missed", "#d55e00"),
        ("undetermined", "#bbbbbb"),
    ];
    for (i, (name, figure)) in bars.iter().enumerate() {
        let top = TOP + (bar_h + 6.0) * i as f64;
        let total = (figure.met + figure.missed + figure.undetermined).max(1) as f64;
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            label_w - 6.0,
            top + 13.0,
            escape(&shorten(name, 30))
        );
        let mut left = label_w;
        for ((_, colour), count) in
            parts
                .iter()
                .zip([figure.met, figure.missed, figure.undetermined])
        {
            let w = plot_w * count as f64 / total;
            if w > 0.0 {
                let _ = write!(
                    out,
                    r#"<path d="M{left:.1} {top:.1} h{w:.1} v{bar_h} h{:.1} Z" fill="{colour}" class="bar"><title>{count}</title></path>"#,
                    -w
                );
            }
            left += w;
        }
    }
    let legend_y = height - 14.0;
    let mut lx = label_w;
    for (name, colour) in parts {
        let _ = write!(
            out,
            r#"<path d="M{lx} {:.1} h12 v10 h-12 Z" fill="{colour}"/><text x="{}" y="{legend_y:.1}" font-size="11">{name}</text>"#,
            legend_y - 9.0,
            lx + 16.0
        );
        lx += 110.0;
    }
    out.push_str("</svg>");
    out
}

/// Notices per month (bars, left scale) and the share within the first
/// norm (line and dots, right scale).
pub fn trend_chart(months: &[Month]) -> String {
    let height = 260.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - BOTTOM;
    let bottom = TOP + plot_h;
    let max = months.iter().map(|m| m.notices).max().unwrap_or(1).max(1) as f64;
    let slot = plot_w / months.len().max(1) as f64;
    let mut out = String::new();
    open(&mut out, height, "Monthly trend");
    let _ = write!(
        out,
        r##"<path d="M{LEFT} {TOP} V{bottom} H{}" fill="none" stroke="#444" class="axis"/>"##,
        LEFT + plot_w
    );
    let mut line = String::new();
    for (i, m) in months.iter().enumerate() {
        let cx = LEFT + slot * (i as f64 + 0.5);
        let h = plot_h * m.notices as f64 / max;
        let w = (slot * 0.6).min(60.0);
        let _ = write!(
            out,
            r##"<path d="M{:.1} {bottom:.1} v{:.1} h{w:.1} v{h:.1} Z" fill="#56b4e9" class="bar"><title>{} notices</title></path><text x="{cx:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
            cx - w / 2.0,
            -h,
            m.notices,
            bottom + 15.0,
            escape(&m.month)
        );
        if let Some(share) = m.share_within_first_norm {
            let py = TOP + plot_h * (1.0 - share);
            let _ = write!(
                line,
                "{}{cx:.1} {py:.1} ",
                if line.is_empty() { "M" } else { "L" }
            );
            let _ = write!(
                out,
                r##"<path d="M{:.1} {py:.1} h6 v0.01 h-6 Z" stroke="#d55e00" stroke-width="6" stroke-linejoin="round" class="dot"/>"##,
                cx - 3.0
            );
        }
    }
    if !line.is_empty() {
        let _ = write!(
            out,
            r##"<path d="{}" fill="none" stroke="#d55e00" stroke-width="2" class="line"/>"##,
            line.trim_end()
        );
    }
    let _ = write!(
        out,
        r##"<text x="{}" y="{:.1}" font-size="10" text-anchor="end">{max:.0}</text><text x="{}" y="{:.1}" font-size="10" text-anchor="end">0</text><text x="{}" y="{:.1}" font-size="10">100%</text><text x="{}" y="{:.1}" font-size="10">0%</text>"##,
        LEFT - 4.0,
        TOP + 4.0,
        LEFT - 4.0,
        bottom,
        LEFT + plot_w + 4.0,
        TOP + 4.0,
        LEFT + plot_w + 4.0,
        bottom
    );
    let lx = WIDTH - RIGHT + 24.0;
    let _ = write!(
        out,
        r##"<path d="M{lx} 20 h12 v10 h-12 Z" fill="#56b4e9"/><text x="{}" y="29" font-size="11">notices</text><path d="M{lx} 45 h14" stroke="#d55e00" stroke-width="2"/><text x="{}" y="49" font-size="11">within 1st norm</text></svg>"##,
        lx + 18.0,
        lx + 18.0
    );
    out
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        text.chars().take(width - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `d` attribute of the first path of `class`.
    fn path_of<'a>(svg: &'a str, class: &str) -> &'a str {
        let at = svg.find(&format!(r#"class="{class}""#)).unwrap();
        let start = svg[..at].rfind(r#"d=""#).unwrap() + 3;
        &svg[start..start + svg[start..].find('"').unwrap()]
    }

    #[test]
    fn censoring_marks_sit_on_the_curve_at_their_time() {
        let curve = Curve {
            steps: vec![(10.0, 0.5), (20.0, 0.25)],
            censored: vec![5.0, 10.0, 15.0, 40.0],
        };
        let svg = survival_chart(&[("all", &curve)]);
        let y = |share: f64| TOP + (300.0 - TOP - BOTTOM) * (1.0 - share);
        let tops: Vec<String> = path_of(&svg, "censored")
            .split('M')
            .filter(|m| !m.is_empty())
            .map(|m| m.split(' ').nth(1).unwrap().to_owned())
            .collect();
        let want: Vec<String> = [1.0, 0.5, 0.5, 0.25]
            .iter()
            .map(|share| format!("{:.1}", y(*share) - 5.0))
            .collect();
        assert_eq!(tops, want);
    }

    #[test]
    fn a_curve_of_many_steps_is_drawn_once_per_tenth_of_a_unit() {
        let n = 200_000;
        let steps: Vec<(f64, f64)> = (1..=n)
            .map(|i| (i as f64, 1.0 - i as f64 / n as f64))
            .collect();
        let curve = Curve {
            steps,
            censored: vec![],
        };
        let d = path_of(&survival_chart(&[("all", &curve)]), "curve").to_owned();
        let moves = d.matches('H').count();
        // 494 units of plot width: one move per tenth at most, and the end.
        assert!(moves <= 4_941 + 1, "{moves} moves");
        assert!(moves > 4_000, "{moves} moves");
        assert!(
            d.ends_with(&format!("V{:.1} H{:.1}", TOP + 244.0, WIDTH - RIGHT)),
            "{}",
            &d[d.len() - 40..]
        );
    }

    #[test]
    fn of_points_on_one_tenth_the_last_is_kept() {
        let points = [(1.0, 1.0), (1.04, 0.9), (1.2, 0.8), (1.21, 0.7), (1.5, 0.6)];
        assert_eq!(
            last_per_tenth(points.into_iter()),
            [(1.04, 0.9), (1.21, 0.7), (1.5, 0.6)]
        );
    }
}
