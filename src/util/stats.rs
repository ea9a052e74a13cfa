//! Robust statistics used by evaluation and calibration reports.

/// Median of a slice (NaNs removed); NaN for an empty input.
pub(crate) fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

/// Linear-interpolated percentile (0..100) of the finite values; NaN if none.
pub(crate) fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let r = (p / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let i = r.floor() as usize;
    let j = (i + 1).min(v.len() - 1);
    v[i] + (r - i as f64) * (v[j] - v[i])
}

/// Robust scatter: 1.4826 x median absolute deviation about the median.
pub(crate) fn robust_scatter(xs: &[f64]) -> f64 {
    let m = median(xs);
    let dev: Vec<f64> = xs.iter().map(|x| (x - m).abs()).collect();
    1.4826 * median(&dev)
}

/// Weighted quantiles of values with non-negative weights (weights need not be normalised).
/// Only samples of positive weight take part: a zero-weight sample is not an interpolation
/// node (it carries no posterior mass). Midpoint rule: the i-th sorted positive-weight value
/// sits at cumulative weight c_i - w_i / 2, with linear interpolation between such nodes
/// and the end values beyond the first and last node. `order` is scratch space.
pub(crate) fn weighted_quantiles(
    values: &[f64],
    weights: &[f64],
    qs: &[f64],
    out: &mut [f64],
    order: &mut Vec<usize>,
) {
    order.clear();
    order.extend((0..values.len()).filter(|&i| weights[i] > 0.0));
    let total: f64 = order.iter().map(|&i| weights[i]).sum();
    if order.is_empty() || !(total > 0.0) {
        out.iter_mut().for_each(|o| *o = f64::NAN);
        return;
    }
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut qi = 0;
    let mut cum = 0.0;
    let mut prev: Option<(f64, f64)> = None;
    for &idx in order.iter() {
        let w = weights[idx] / total;
        let pos = cum + 0.5 * w;
        while qi < qs.len() && qs[qi] <= pos {
            out[qi] = match prev {
                Some((p_pos, p_val)) if pos > p_pos => {
                    p_val + (qs[qi] - p_pos) / (pos - p_pos) * (values[idx] - p_val)
                }
                _ => values[idx],
            };
            qi += 1;
        }
        prev = Some((pos, values[idx]));
        cum += w;
    }
    let last = prev.map_or(f64::NAN, |p| p.1);
    while qi < qs.len() {
        out[qi] = last;
        qi += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_scatter() {
        let xs: Vec<f64> = (0..=100).map(|i| i as f64).collect();
        assert_eq!(median(&xs), 50.0);
        assert!((percentile(&xs, 95.0) - 95.0).abs() < 1e-12);
        let mut r = crate::util::rng::Rng::new(1);
        let g: Vec<f64> = (0..100_000).map(|_| 2.0 * r.normal()).collect();
        assert!((robust_scatter(&g) - 2.0).abs() < 0.03);
    }

    #[test]
    fn weighted_quantiles_match_unweighted_for_equal_weights() {
        let mut r = crate::util::rng::Rng::new(5);
        let v: Vec<f64> = (0..20_001).map(|_| r.normal()).collect();
        let w = vec![1.0; v.len()];
        let qs = [0.05, 0.16, 0.5, 0.84, 0.95];
        let mut out = [0.0; 5];
        let mut order = Vec::new();
        weighted_quantiles(&v, &w, &qs, &mut out, &mut order);
        for (q, o) in qs.iter().zip(out) {
            assert!((o - percentile(&v, q * 100.0)).abs() < 0.01, "q{q}: {o}");
        }
        // midpoint rule: the i-th of n equally weighted sorted values sits at (i + 0.5) / n,
        // linear in between, the end values beyond the first and last node
        let desc: Vec<f64> = (0..100).rev().map(|i| i as f64).collect();
        let mut eq = [0.0; 4];
        weighted_quantiles(
            &desc,
            &[1.0; 100],
            &[0.001, 0.025, 0.16, 0.5],
            &mut eq,
            &mut order,
        );
        assert_eq!(eq[0], 0.0);
        assert!((eq[1] - 2.0).abs() < 1e-12, "{eq:?}");
        assert!(
            (eq[2] - 15.5).abs() < 1e-12 && (eq[3] - 49.5).abs() < 1e-12,
            "{eq:?}"
        );
        // doubling the weight of the upper half moves the median up
        let w2: Vec<f64> = v.iter().map(|&x| if x > 0.0 { 2.0 } else { 1.0 }).collect();
        weighted_quantiles(&v, &w2, &[0.5], &mut out[..1], &mut order);
        assert!(out[0] > 0.3);
    }

    /// Zero-weight samples are not interpolation nodes: the quantiles of {1, 2, 3} with
    /// weights {1, 0, 1} interpolate between 1 and 3 only.
    #[test]
    fn weighted_quantiles_skip_zero_weights() {
        let mut out = [0.0; 3];
        let mut order = Vec::new();
        weighted_quantiles(
            &[1.0, 2.0, 3.0],
            &[1.0, 0.0, 1.0],
            &[0.25, 0.5, 0.75],
            &mut out,
            &mut order,
        );
        assert_eq!(out, [1.0, 2.0, 3.0]);
        weighted_quantiles(
            &[1.0, 1.9, 3.0],
            &[1.0, 0.0, 1.0],
            &[0.5],
            &mut out[..1],
            &mut order,
        );
        assert_eq!(out[0], 2.0, "the zero-weight value 1.9 must not be a node");
        weighted_quantiles(&[1.0, 2.0], &[0.0, 0.0], &[0.5], &mut out[..1], &mut order);
        assert!(out[0].is_nan());
    }
}
