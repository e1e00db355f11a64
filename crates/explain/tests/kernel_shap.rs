//! KernelSHAP against brute-force Shapley values (recorded from Python, and computed here
//! from permutations), shap.KernelExplainer, and its own exact values when sampled.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop, missing_docs)]

use std::cell::Cell;
use std::convert::Infallible;
use std::path::PathBuf;

use palisade_explain::{ExplainError, KernelShap, KernelShapOptions};
use serde_json::Value;

/// The polynomial model of fixtures/explain.py: two outputs, the second clipped at 0.
#[derive(Clone)]
struct Poly {
    linear: Vec<Vec<f64>>,
    pairs: Vec<(usize, usize)>,
    pair_weights: Vec<Vec<f64>>,
    bias: Vec<f64>,
}

impl Poly {
    fn from_json(v: &Value) -> Poly {
        let mat = |v: &Value| -> Vec<Vec<f64>> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
                .collect()
        };
        Poly {
            linear: mat(&v["linear"]),
            pairs: v["pairs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize))
                .collect(),
            pair_weights: mat(&v["pair_weights"]),
            bias: v["bias"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(),
        }
    }

    /// A model like the fixtures', with weights from a simple generator.
    fn random(m: usize, seed: u64) -> Poly {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        Poly {
            linear: (0..2).map(|_| (0..m).map(|_| next()).collect()).collect(),
            pairs: (0..m).map(|i| (i, (i * 3 + 1) % m)).collect(),
            pair_weights: (0..2).map(|_| (0..m).map(|_| next()).collect()).collect(),
            bias: vec![0.5, -1.0],
        }
    }

    fn eval_row(&self, x: &[f32], out: &mut [f64]) {
        for o in 0..2 {
            let mut v = self.bias[o];
            for (j, &xj) in x.iter().enumerate() {
                v += f64::from(xj) * self.linear[o][j];
            }
            for (&(i, j), &w) in self.pairs.iter().zip(&self.pair_weights[o]) {
                v += w * f64::from(x[i]) * f64::from(x[j]);
            }
            out[o] = if o == 0 { v } else { v.max(0.0) };
        }
    }

    fn batch(&self, rows: &[f32], n: usize) -> Vec<f64> {
        let m = rows.len() / n.max(1);
        let mut out = vec![0.0; 2 * n];
        for (r, x) in rows.chunks_exact(m).enumerate() {
            self.eval_row(x, &mut out[2 * r..2 * r + 2]);
        }
        out
    }
}

fn values(v: &Value) -> Vec<f64> {
    fn walk(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap()),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

fn rows(v: &Value) -> Vec<f32> {
    values(v).into_iter().map(|x| x as f32).collect()
}

/// Brute force from the definition over permutations: φ_i is the mean over orderings of
/// i's marginal contribution to v(S) = mean_b f(x_S, b_rest).
fn permutation_shapley(model: &Poly, x: &[f32], background: &[f32], output: usize) -> Vec<f64> {
    let m = x.len();
    let value = |mask: u64| {
        let mut total = 0.0;
        let mut out = [0.0; 2];
        let mut row = vec![0.0f32; m];
        for b in background.chunks_exact(m) {
            for j in 0..m {
                row[j] = if mask >> j & 1 == 1 { x[j] } else { b[j] };
            }
            model.eval_row(&row, &mut out);
            total += out[output];
        }
        total / (background.len() / m) as f64
    };
    let mut phi = vec![0.0; m];
    let mut perm: Vec<usize> = (0..m).collect();
    let mut count = 0usize;
    // Heap's algorithm over all m! orderings.
    fn heap(k: usize, perm: &mut Vec<usize>, f: &mut dyn FnMut(&[usize])) {
        if k == 1 {
            f(perm);
            return;
        }
        for i in 0..k {
            heap(k - 1, perm, f);
            if k.is_multiple_of(2) { perm.swap(i, k - 1) } else { perm.swap(0, k - 1) }
        }
    }
    heap(m, &mut perm, &mut |p: &[usize]| {
        let mut mask = 0u64;
        let mut before = value(0);
        for &i in p {
            mask |= 1 << i;
            let after = value(mask);
            phi[i] += after - before;
            before = after;
        }
        count += 1;
    });
    phi.iter().map(|v| v / count as f64).collect()
}

#[test]
fn exact_values_match_python_brute_force_and_kernel_explainer() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/explain/kernel.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let m = case["n_features"].as_u64().unwrap() as usize;
        let model = Poly::from_json(&case["model"]);
        let background = rows(&case["background"]);
        let x = rows(&case["rows"]);
        let n_rows = x.len() / m;
        let shap = KernelShap::new(background.clone(), background.len() / m, m, KernelShapOptions::default())
            .unwrap();
        let calls = Cell::new(0);
        let e = shap
            .explain(&x, n_rows, |batch, n| {
                calls.set(calls.get() + 1);
                Ok::<_, Infallible>(model.batch(batch, n))
            })
            .unwrap();
        assert_eq!(calls.get(), 1, "one model call per request");
        assert!(e.exact);
        let e = e.explanation;
        // Python's layout: [row][output][feature]; ours: [output][row][feature].
        let brute = values(&case["shap_values"]);
        let kernel = values(&case["kernel_explainer"]);
        let mut worst = 0.0f64;
        for r in 0..n_rows {
            for o in 0..2 {
                for j in 0..m {
                    let got = e.value(o, r, j).unwrap();
                    let want = brute[(r * 2 + o) * m + j];
                    worst = worst.max((got - want).abs());
                    if !kernel.is_empty() {
                        assert!((got - kernel[(r * 2 + o) * m + j]).abs() < 1e-6, "KernelExplainer m={m}");
                    }
                }
            }
        }
        assert!(worst < 1e-6, "m={m}: {worst:e}");
        let expected = values(&case["expected_value"]);
        for o in 0..2 {
            assert!((e.expected_value[o] - expected[o]).abs() < 1e-9);
        }
        println!("m={m}: largest |KernelSHAP - brute force| {worst:.2e}");
    }
}

#[test]
fn exact_values_match_permutation_shapley_and_add_up() {
    for m in 1..=6 {
        let model = Poly::random(m, m as u64);
        let background: Vec<f32> = (0..7 * m).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
        let x: Vec<f32> = (0..2 * m).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect();
        let shap = KernelShap::new(background.clone(), 7, m, KernelShapOptions::default()).unwrap();
        let e = shap.explain(&x, 2, |b, n| Ok::<_, Infallible>(model.batch(b, n))).unwrap().explanation;
        for r in 0..2 {
            for o in 0..2 {
                let brute = permutation_shapley(&model, &x[r * m..(r + 1) * m], &background, o);
                let mut sum = e.expected_value[o];
                for j in 0..m {
                    assert!((e.value(o, r, j).unwrap() - brute[j]).abs() < 1e-9, "m={m}");
                    sum += e.value(o, r, j).unwrap();
                }
                assert!((sum - e.margins[r * 2 + o]).abs() < 1e-9);
            }
        }
    }
}

/// The sampled estimate against exact enumeration at M = 13 and 14, over 20 seeds and two
/// budgets: the 99.9% bound holds for (nearly) every value, as a 99.9% interval should;
/// nothing is off by more than twice it; efficiency holds exactly; a seed repeats itself.
#[test]
fn sampled_values_are_within_their_error_bound() {
    let (mut values, mut outside, mut worst_ratio) = (0usize, 0usize, 0.0f64);
    for m in [13usize, 14] {
        let model = Poly::random(m, 100 + m as u64);
        let background: Vec<f32> = (0..6 * m).map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0).collect();
        let x: Vec<f32> = (0..3 * m).map(|i| ((i * 29 % 13) as f32 - 6.0) / 3.0).collect();
        let run = |options: KernelShapOptions| {
            let shap = KernelShap::new(background.clone(), 6, m, options).unwrap();
            shap.explain(&x, 3, |b, n| Ok::<_, Infallible>(model.batch(b, n))).unwrap()
        };
        let exact = run(KernelShapOptions { exact_max_features: 14, ..KernelShapOptions::default() });
        assert!(exact.exact);
        for samples in [1024usize, 2048] {
            let mut worst = 0.0f64;
            for seed in 0..20u64 {
                let options = KernelShapOptions { samples, seed, ..KernelShapOptions::default() };
                let sampled = run(options);
                assert!(!sampled.exact);
                let pairs = sampled.explanation.shap_values.iter().zip(&exact.explanation.shap_values);
                for (k, (&s, &t)) in pairs.enumerate() {
                    let bound = sampled.error_bound[k];
                    let err = (s - t).abs();
                    assert!(
                        err <= 2.0 * bound + 1e-9,
                        "m={m} seed {seed} value {k}: error {err:e}, bound {bound:e}"
                    );
                    values += 1;
                    if err > bound + 1e-9 {
                        outside += 1;
                    }
                    worst = worst.max(err);
                    if err > 1e-9 {
                        worst_ratio = worst_ratio.max(err / bound);
                    }
                }
                let e = &sampled.explanation;
                for r in 0..3 {
                    for o in 0..2 {
                        let s: f64 =
                            (0..m).map(|j| e.value(o, r, j).unwrap()).sum::<f64>() + e.expected_value[o];
                        assert!((s - e.margins[r * 2 + o]).abs() < 1e-9);
                    }
                }
                if seed == 0 {
                    assert_eq!(run(options).explanation.shap_values, sampled.explanation.shap_values);
                }
            }
            println!("m={m}, {samples} coalitions: largest error {worst:.2e}");
        }
    }
    println!(
        "{outside} of {values} values outside their 99.9% bound; largest error / bound {worst_ratio:.2}"
    );
    assert!(outside * 200 <= values, "{outside} of {values} values outside their bound");
}

#[test]
fn sixty_four_features_are_sampled_and_add_up() {
    let m = 64;
    let model = Poly::random(m, 64);
    let background: Vec<f32> = (0..2 * m).map(|i| (i % 5) as f32 / 5.0).collect();
    let x: Vec<f32> = (0..m).map(|i| (i % 3) as f32).collect();
    let options = KernelShapOptions { samples: 512, ..KernelShapOptions::default() };
    let e = KernelShap::new(background, 2, m, options).unwrap();
    let e = e.explain(&x, 1, |b, n| Ok::<_, Infallible>(model.batch(b, n))).unwrap();
    assert!(!e.exact);
    for o in 0..2 {
        let s: f64 = (0..m).map(|j| e.explanation.value(o, 0, j).unwrap()).sum::<f64>()
            + e.explanation.expected_value[o];
        assert!((s - e.explanation.margins[o]).abs() < 1e-9);
    }
    assert!(e.error_bound.iter().all(|b| b.is_finite() && *b >= 0.0));
}

#[test]
fn bad_inputs_and_models_are_errors() {
    let model = Poly::random(3, 1);
    let ok = |b: &[f32], n: usize| Ok::<_, Infallible>(model.batch(b, n));
    assert!(KernelShap::new(vec![], 0, 3, KernelShapOptions::default()).is_err());
    assert!(KernelShap::new(vec![1.0; 5], 2, 3, KernelShapOptions::default()).is_err());
    assert!(KernelShap::new(vec![f32::NAN, 0.0, 0.0], 1, 3, KernelShapOptions::default()).is_err());
    assert!(KernelShap::new(vec![0.0; 65], 1, 65, KernelShapOptions::default()).is_err());
    let shap = KernelShap::new(vec![0.0; 6], 2, 3, KernelShapOptions::default()).unwrap();
    assert!(matches!(shap.explain(&[1.0; 4], 2, ok), Err(ExplainError::Shape { .. })));
    assert!(matches!(shap.explain(&[1.0; 6], usize::MAX, ok), Err(ExplainError::Shape { .. })));
    let wrong = |_: &[f32], n: usize| Ok::<_, Infallible>(vec![0.0; 2 * n + 1]);
    assert!(matches!(shap.explain(&[1.0; 3], 1, wrong), Err(ExplainError::Model(_))));
    let failing = |_: &[f32], _: usize| Err::<Vec<f64>, _>("model is down");
    assert!(matches!(shap.explain(&[1.0; 3], 1, failing), Err(ExplainError::Model(m)) if m.contains("down")));
    let huge = KernelShapOptions { samples: usize::MAX, ..KernelShapOptions::default() };
    assert!(KernelShap::new(vec![0.0; 13], 1, 13, huge).is_err());
    let small = KernelShapOptions { max_batch_values: 100, ..KernelShapOptions::default() };
    let shap = KernelShap::new(vec![0.0; 60], 20, 3, small).unwrap();
    assert!(matches!(shap.explain(&[1.0; 3], 1, ok), Err(ExplainError::TooLarge { .. })));
}
