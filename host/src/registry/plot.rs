//! Loss curves as a PNG: train and validation loss, and for DPO the rewards (chosen, rejected,
//! margins) and accuracies, one panel each, against the step.
//!
//! Lines, grid and frame are drawn with plotters' bitmap backend. Its text needs a font engine
//! (system fonts through font-kit, or a font file through ab_glyph), which a fresh machine may not
//! have; so plotters never draws text here, and titles, legends and tick labels are drawn pixel
//! by pixel from the public-domain 8×8 bitmap font of the `font8x8` crate.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One line of a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

const WIDTH: u32 = 960;
const PANEL_HEIGHT: u32 = 320;
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
const GRID: RGBColor = RGBColor(225, 225, 225);
const INK: RGBColor = RGBColor(40, 40, 40);

/// Train-side names first, so the train curve gets the first color.
fn loss_rank(name: &str) -> (u8, String) {
    let rank = match name {
        "train_loss" | "loss" | "train/loss" => 0,
        "val_loss" | "eval_loss" | "val/loss" | "eval/loss" | "valid_loss" => 1,
        _ => 2,
    };
    (rank, name.to_string())
}

/// The panels worth drawing from a run's metrics (name → (step, value)): losses; DPO rewards;
/// DPO accuracies. Empty when the run logged none of them.
pub fn panels_for(metrics: &BTreeMap<String, Vec<(i64, f64)>>) -> Vec<Panel> {
    let series = |names: Vec<&String>| -> Vec<Series> {
        names
            .into_iter()
            .map(|n| Series { name: n.clone(), points: metrics[n].iter().map(|&(s, v)| (s as f64, v)).filter(|p| p.1.is_finite()).collect() })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let mut losses: Vec<&String> = metrics.keys().filter(|n| n.contains("loss") && !n.contains("rewards/")).collect();
    losses.sort_by_key(|n| loss_rank(n));
    let rewards: Vec<&String> = metrics.keys().filter(|n| n.contains("rewards/") && !n.contains("accurac")).collect();
    let accuracies: Vec<&String> = metrics.keys().filter(|n| n.contains("accurac")).collect();
    let mut panels = Vec::new();
    for (title, names) in [("loss", losses), ("DPO rewards", rewards), ("accuracy", accuracies)] {
        let s = series(names);
        if !s.is_empty() {
            panels.push(Panel { title: title.into(), series: s });
        }
    }
    panels
}

/// Writes a run's curves to `path` (PNG). False (and no file) when there is nothing to draw.
pub fn write_curves(path: &Path, run_id: &str, metrics: &BTreeMap<String, Vec<(i64, f64)>>) -> Result<bool> {
    let panels = panels_for(metrics);
    if panels.is_empty() {
        return Ok(false);
    }
    write_png(path, run_id, &panels)?;
    Ok(true)
}

/// Draws `panels` one under the other into the PNG `path`; `title` heads the first.
pub fn write_png(path: &Path, title: &str, panels: &[Panel]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow!("creating {}: {e}", dir.display()))?;
    }
    let height = PANEL_HEIGHT * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (i, (area, panel)) in areas.iter().zip(panels).enumerate() {
        let heading = if i == 0 { format!("{title}  -  {}", panel.title) } else { panel.title.clone() };
        draw_panel(&root, area, &heading, panel).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn draw_panel(root: &Area<'_>, area: &Area<'_>, heading: &str, panel: &Panel) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let all = panel.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return Ok(());
    }
    if x1 - x0 < 1.0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = ((y1 - y0) * 0.06).max(y1.abs().max(1e-3) * 1e-3);
    let (y0, y1) = (y0 - pad, y1 + pad);

    let (bx, by) = area.get_base_pixel();
    let mut chart = ChartBuilder::on(area)
        .margin_top(34)
        .margin_bottom(30)
        .margin_left(84)
        .margin_right(24)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;

    let ticks = 5;
    for k in 0..=ticks {
        let y = y0 + (y1 - y0) * k as f64 / ticks as f64;
        chart.draw_series(std::iter::once(PathElement::new(vec![(x0, y), (x1, y)], GRID))).map_err(e)?;
        let (px, py) = chart.backend_coord(&(x0, y));
        let label = format_tick(y, y1 - y0);
        let label = if label.starts_with('-') && label.trim_start_matches(['-', '0', '.']).is_empty() { label[1..].to_string() } else { label };
        draw_text(root, &label, (px - 6 - text_width(&label, 1), py - 4), 1, &INK).map_err(e)?;
        let x = x0 + (x1 - x0) * k as f64 / ticks as f64;
        chart.draw_series(std::iter::once(PathElement::new(vec![(x, y0), (x, y1)], GRID))).map_err(e)?;
        let (px, py) = chart.backend_coord(&(x, y0));
        let label = format!("{}", x.round() as i64);
        draw_text(root, &label, (px - text_width(&label, 1) / 2, py + 8), 1, &INK).map_err(e)?;
    }
    chart
        .draw_series(std::iter::once(Rectangle::new([(x0, y0), (x1, y1)], ShapeStyle::from(&INK).stroke_width(1))))
        .map_err(e)?;
    for (i, s) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2))).map_err(e)?;
        if s.points.len() <= 2 {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(e)?;
        }
    }

    draw_text(root, heading, (bx + 84, by + 10), 2, &INK).map_err(e)?;
    // Legend, right-aligned on the heading's line.
    let (w, _) = area.dim_in_pixel();
    let mut x = bx + w as i32 - 24;
    for (i, s) in panel.series.iter().enumerate().rev() {
        let color = COLORS[i % COLORS.len()];
        x -= text_width(&s.name, 1);
        draw_text(root, &s.name, (x, by + 14), 1, &INK).map_err(e)?;
        x -= 26;
        root.draw(&Rectangle::new([(x, by + 16), (x + 18, by + 19)], color.filled())).map_err(e)?;
        x -= 16;
    }
    draw_text(root, "step", (bx + w as i32 - 24 - text_width("step", 1), by + PANEL_HEIGHT as i32 - 12), 1, &INK).map_err(e)?;
    Ok(())
}

/// A tick value: short, with enough digits to tell neighbours apart across `span`.
fn format_tick(v: f64, span: f64) -> String {
    // A tick a rounding error away from zero is zero (no "-0.00").
    let v = if v.abs() <= span.abs() * 1e-9 { 0.0 } else { v };
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let digits = if span > 0.0 { (-(span / 5.0).log10().floor()).clamp(0.0, 6.0) as usize + 1 } else { 2 };
    format!("{v:.digits$}")
}

/// Width in pixels of `text` in the 8×8 font at `scale`.
pub fn text_width(text: &str, scale: i32) -> i32 {
    text.chars().count() as i32 * 8 * scale
}

/// Draws `text` with its top-left corner at `at` (backend pixels), each font pixel a
/// `scale`×`scale` square. Characters outside ASCII print as `?`.
pub fn draw_text<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, text: &str, at: (i32, i32), scale: i32, color: &RGBColor) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (w, h) = root.dim_in_pixel();
    for (i, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() { ch as usize } else { '?' as usize };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        let ox = at.0 + i as i32 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (x, y) = (ox + col * scale + dx, at.1 + row as i32 * scale + dy);
                        if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                            root.draw_pixel((x, y), color)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(pairs: &[(&str, &[(i64, f64)])]) -> BTreeMap<String, Vec<(i64, f64)>> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect()
    }

    #[test]
    fn picks_panels_and_orders_train_first() {
        let m = metrics(&[
            ("val_loss", &[(0, 2.0), (10, 1.5)]),
            ("train_loss", &[(5, 2.1), (10, 1.4)]),
            ("learning_rate", &[(5, 1e-5)]),
        ]);
        let p = panels_for(&m);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["train_loss", "val_loss"]);
        let m = metrics(&[
            ("loss", &[(1, 0.69)]),
            ("rewards/chosen", &[(1, 0.1)]),
            ("rewards/rejected", &[(1, -0.1)]),
            ("rewards/margins", &[(1, 0.2)]),
            ("rewards/accuracies", &[(1, 1.0)]),
        ]);
        let p = panels_for(&m);
        assert_eq!(p.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(), ["loss", "DPO rewards", "accuracy"]);
        assert_eq!(p[1].series.len(), 3);
        assert!(panels_for(&metrics(&[("learning_rate", &[(1, 1e-5)])])).is_empty());
    }

    #[test]
    fn writes_a_png_with_ink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/curves.png");
        let m = metrics(&[
            ("train_loss", &(1..=50).map(|s| (s, 3.0 / (s as f64).sqrt())).collect::<Vec<_>>()),
            ("val_loss", &[(0, 3.2), (25, 1.0), (50, 0.7)]),
            ("rewards/margins", &[(10, 0.1), (20, 0.3)]),
        ]);
        assert!(write_curves(&path, "sft-1", &m).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // 960 x 640: two panels.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), WIDTH);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 2 * PANEL_HEIGHT);
        assert!(!write_curves(&dir.path().join("none.png"), "x", &BTreeMap::new()).unwrap());
        assert!(!dir.path().join("none.png").exists());
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(format_tick(1.23456, 1.0), "1.23");
        assert_eq!(format_tick(0.0, 1.0), "0.00");
        assert_eq!(format_tick(2.5e-5, 1e-5), "2.50e-5");
        assert_eq!(format_tick(12.0, 50.0), "12.0");
        assert_eq!(format_tick(-1e-12, 1.0), "0.00");
    }
}
