//! Numerics shared by calibration and the posterior sampler: small dense symmetric
//! positive-definite algebra (Cholesky factorisation, solves, inverses) for per-star
//! covariances, normal equations and proposal scale matrices. Row-major `Vec<f64>`; sizes are tens to a few hundred, so plain loops suffice.

/// In-place Cholesky factorisation A = L L^T of a symmetric n x n matrix (lower triangle
/// used, L written into it). Returns false if A is not positive definite.
pub(crate) fn cholesky(a: &mut [f64], n: usize) -> bool {
    debug_assert_eq!(a.len(), n * n);
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if !(d > 0.0) || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
        for i in 0..j {
            a[i * n + j] = 0.0;
        }
    }
    true
}

/// Solve L L^T x = b in place given the Cholesky factor L.
pub(crate) fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= l[k * n + i] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
}

/// Inverse of a symmetric positive-definite matrix (None if not positive definite).
pub(crate) fn spd_inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = a.to_vec();
    if !cholesky(&mut l, n) {
        return None;
    }
    let mut inv = vec![0.0; n * n];
    let mut col = vec![0.0; n];
    for j in 0..n {
        col.iter_mut().for_each(|c| *c = 0.0);
        col[j] = 1.0;
        cholesky_solve(&l, n, &mut col);
        for i in 0..n {
            inv[i * n + j] = col[i];
        }
    }
    Some(inv)
}

/// Project a small symmetric matrix (row-major n x n) onto the positive semi-definite
/// cone in place: eigenvalues below zero are set to zero (cyclic Jacobi rotations; n is 2-6
/// here, so a few sweeps converge to machine precision).
pub(crate) fn clip_to_psd(a: &mut [f64], n: usize) {
    debug_assert_eq!(a.len(), n * n);
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let mut d = a.to_vec();
    for _sweep in 0..30 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| d[i * n + j] * d[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| d[i * n + i] * d[i * n + i]).sum::<f64>() + 1e-300;
        if off <= 1e-24 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = d[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (d[q * n + q] - d[p * n + p]) / (2.0 * apq);
                let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (dkp, dkq) = (d[k * n + p], d[k * n + q]);
                    d[k * n + p] = c * dkp - s * dkq;
                    d[k * n + q] = s * dkp + c * dkq;
                }
                for k in 0..n {
                    let (dpk, dqk) = (d[p * n + k], d[q * n + k]);
                    d[p * n + k] = c * dpk - s * dqk;
                    d[q * n + k] = s * dpk + c * dqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    // a = V diag(max(lambda, 0)) V^T
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n)
                .map(|k| v[i * n + k] * d[k * n + k].max(0.0) * v[j * n + k])
                .sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_of_spd_matrix() {
        let n = 4;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = 1.0 / (1.0 + i as f64 + j as f64) + if i == j { 1.0 } else { 0.0 };
            }
        }
        let inv = spd_inverse(&a, n).unwrap();
        for i in 0..n {
            for j in 0..n {
                let s: f64 = (0..n).map(|k| a[i * n + k] * inv[k * n + j]).sum();
                assert!((s - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        let mut bad = vec![1.0, 2.0, 2.0, 1.0];
        assert!(!cholesky(&mut bad, 2));
    }

    #[test]
    fn psd_clip_keeps_psd_and_zeroes_negative_eigenvalues() {
        // eigenvalues 3, 1, -2 along a rotated basis
        let c = (0.3f64).cos();
        let s = (0.3f64).sin();
        let q = [c, -s, 0.0, s * 0.8, c * 0.8, 0.6, -s * 0.6, -c * 0.6, 0.8];
        let lam = [3.0, 1.0, -2.0];
        let mut a = vec![0.0; 9];
        for i in 0..3 {
            for j in 0..3 {
                a[i * 3 + j] = (0..3).map(|k| q[i * 3 + k] * lam[k] * q[j * 3 + k]).sum();
            }
        }
        let mut b = a.clone();
        clip_to_psd(&mut b, 3);
        for i in 0..3 {
            for j in 0..3 {
                let want: f64 = (0..3)
                    .map(|k| q[i * 3 + k] * lam[k].max(0.0) * q[j * 3 + k])
                    .sum();
                assert!(
                    (b[i * 3 + j] - want).abs() < 1e-10,
                    "{i}{j}: {} vs {want}",
                    b[i * 3 + j]
                );
            }
        }
        // an SPD matrix is unchanged
        let mut spd = vec![2.0, 0.5, 0.0, 0.5, 1.0, 0.2, 0.0, 0.2, 3.0];
        let orig = spd.clone();
        clip_to_psd(&mut spd, 3);
        for (x, y) in spd.iter().zip(&orig) {
            assert!((x - y).abs() < 1e-10);
        }
    }
}
