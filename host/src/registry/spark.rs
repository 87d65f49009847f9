//! Terminal sparklines: a series as one line of block characters.

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `values` (non-finite ones skipped) drawn in at most `width` characters: longer series are
/// averaged over equal buckets. Lowest value → `▁`, highest → `█`; a flat series is all `▄`.
pub fn sparkline(values: &[f64], width: usize) -> String {
    let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let points: Vec<f64> = if values.len() <= width {
        values
    } else {
        (0..width)
            .map(|i| {
                let a = i * values.len() / width;
                let b = ((i + 1) * values.len() / width).max(a + 1);
                values[a..b].iter().sum::<f64>() / (b - a) as f64
            })
            .collect()
    };
    let lo = points.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = points.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    points
        .iter()
        .map(|&v| {
            if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
                BARS[3]
            } else {
                let t = (v - lo) / (hi - lo);
                BARS[((t * (BARS.len() - 1) as f64).round() as usize).min(BARS.len() - 1)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(sparkline(&[3.0, 2.0, 1.0, 0.0], 10), "█▆▃▁");
        assert_eq!(sparkline(&[1.0, 1.0, 1.0], 10), "▄▄▄");
        assert_eq!(sparkline(&[], 10), "");
        assert_eq!(sparkline(&[1.0, f64::NAN, 0.0], 10), "█▁");
        let long: Vec<f64> = (0..1000).map(|i| -(i as f64)).collect();
        let s = sparkline(&long, 40);
        assert_eq!(s.chars().count(), 40);
        assert!(s.starts_with('█') && s.ends_with('▁'));
    }
}
