//! tract against onnxruntime, and Palisade's onnxruntime engine against onnxruntime alone,
//! side by side in one process: a tabular model (iris RandomForest-100, the README's
//! example) and a small CNN (three convolutions on 3x32x32 images), one row and a batch of
//! 32, one thread each. Also the build-time self-test's duration.
//!
//! ```sh
//! bench/engines.sh            # runs this bench and prints the table of ratios
//! ```
//!
//! Bench ids are `<model>/<engine>/<rows>`, engine being `tract` (Palisade's served path
//! on tract: `OnnxModel::run`), `palisade-onnxruntime` (`OrtModel::run`: Palisade's
//! tensors in, a session from its pool, outputs copied back into Palisade's tensors) and
//! `onnxruntime` (a bare `ort` session with the same options, inputs borrowed, outputs read
//! in place: onnxruntime alone). The input tensors are cloned outside the timed section,
//! as the server moves a request's tensors into the run.
//!
//! The onnxruntime library comes from `PALISADE_ONNXRUNTIME_LIB`, else `.venv/e2e` or
//! `.venv/fixtures` (scripts/install-test-deps.sh, fixtures/generate.sh). With
//! `BENCH_SELFTEST_MODEL=dir` (a model directory with palisade.yaml), the self-test of that
//! model is timed too (bench/engines.sh makes a 100 MB one).

// A bench aborts on any failure, with the message of the `expect`.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use palisade_core::{Tensor, TensorData};
use palisade_runtime::Model;
use palisade_runtime::onnx::OnnxModel;
use palisade_runtime::onnxruntime::{self, OrtModel};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn library() -> &'static onnxruntime::Library {
    let path = onnxruntime::library_path()
        .or_else(|| {
            ["e2e", "fixtures"]
                .iter()
                .find_map(|venv| onnxruntime::find_in_environment(&repo().join(".venv").join(venv)))
        })
        .expect("the onnxruntime library: set PALISADE_ONNXRUNTIME_LIB or run scripts/install-test-deps.sh");
    onnxruntime::load(&path).expect("onnxruntime loads")
}

/// A benched model: its file, input name and the shape of one row.
struct Case {
    name: &'static str,
    file: PathBuf,
    input: &'static str,
    row: Vec<usize>,
}

fn cases() -> Vec<Case> {
    let models = repo().join("fixtures/models");
    vec![
        Case { name: "iris_rf", file: models.join("iris_rf_nozipmap.onnx"), input: "X", row: vec![4] },
        Case {
            name: "cnn_cifar",
            file: models.join("corpus/torch_cnn_cifar.onnx"),
            input: "x",
            row: vec![3, 32, 32],
        },
    ]
}

/// Deterministic inputs in [-1, 1) of `rows` rows.
fn data(rows: usize, row: &[usize]) -> Vec<f32> {
    let n = rows * row.iter().product::<usize>();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bare_session(path: &Path) -> Session {
    let build = || -> Result<Session, Box<dyn std::error::Error>> {
        Ok(Session::builder(library().environment())?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .with_optimization_level(GraphOptimizationLevel::All)?
            .commit_from_file(path)?)
    };
    build().expect("onnxruntime session")
}

fn engines(c: &mut Criterion) {
    let lib = library();
    eprintln!("onnxruntime {} from {}", lib.version(), lib.path().display());
    for case in cases() {
        let tract: Box<dyn Model> = Box::new(OnnxModel::load(&case.file).expect("tract loads"));
        let palisade_ort: Box<dyn Model> = Box::new(OrtModel::load(&case.file).expect("onnxruntime loads"));
        let mut session = bare_session(&case.file);
        let mut group = c.benchmark_group(case.name);
        for rows in [1usize, 32] {
            let values = data(rows, &case.row);
            let mut shape = vec![rows];
            shape.extend(&case.row);
            let tensor =
                Tensor::new(case.input, shape.clone(), TensorData::Fp32(values.clone())).expect("tensor");
            for (engine, model) in [("tract", &tract), ("palisade-onnxruntime", &palisade_ort)] {
                group.bench_function(format!("{engine}/{rows}"), |b| {
                    b.iter_batched(
                        || vec![tensor.clone()],
                        |inputs| black_box(model.run(inputs).expect("run")),
                        BatchSize::SmallInput,
                    )
                });
            }
            group.bench_function(format!("onnxruntime/{rows}"), |b| {
                b.iter(|| {
                    let input = ort::value::TensorRef::from_array_view((shape.clone(), values.as_slice()))
                        .expect("tensor");
                    let outputs = session.run(ort::inputs![case.input => input]).expect("run");
                    // The float output: the probabilities of the forest, the CNN's logits.
                    let (_, values) =
                        outputs[outputs.len() - 1].try_extract_tensor::<f32>().expect("f32 output");
                    black_box(values.first().copied());
                })
            });
        }
        group.finish();
    }
}

/// Palisade's overhead over onnxruntime alone, measured so that a shared machine's load
/// falls on both alike: 200 rounds, each timing a burst of `OrtModel::run` then a burst
/// of the bare session (in alternating order), and the median of the per-round ratios.
/// Printed as `overhead/<model>/<rows>: <ratio>` (criterion's sequential runs drift by
/// more than the overhead on a busy machine).
fn interleaved_overhead(_: &mut Criterion) {
    use std::time::Instant;
    for case in cases() {
        let palisade_ort = OrtModel::load(&case.file).expect("onnxruntime loads");
        let mut session = bare_session(&case.file);
        for rows in [1usize, 32] {
            let values = data(rows, &case.row);
            let mut shape = vec![rows];
            shape.extend(&case.row);
            let tensor =
                Tensor::new(case.input, shape.clone(), TensorData::Fp32(values.clone())).expect("tensor");
            let burst = if rows == 1 { 2000 / case.row.iter().product::<usize>().clamp(1, 100) } else { 20 };
            let burst = burst.max(5);
            let palisade = || {
                let inputs: Vec<Vec<Tensor>> = (0..burst).map(|_| vec![tensor.clone()]).collect();
                let start = Instant::now();
                for inputs in inputs {
                    black_box(palisade_ort.run(inputs).expect("run"));
                }
                start.elapsed()
            };
            let mut bare = || {
                let start = Instant::now();
                for _ in 0..burst {
                    let input = ort::value::TensorRef::from_array_view((shape.clone(), values.as_slice()))
                        .expect("tensor");
                    let outputs = session.run(ort::inputs![case.input => input]).expect("run");
                    let (_, out) =
                        outputs[outputs.len() - 1].try_extract_tensor::<f32>().expect("f32 output");
                    black_box(out.first().copied());
                }
                start.elapsed()
            };
            let mut ratios: Vec<f64> = (0..200)
                .map(|round| {
                    let (p, b) = if round % 2 == 0 {
                        let p = palisade();
                        (p, bare())
                    } else {
                        let b = bare();
                        (palisade(), b)
                    };
                    p.as_secs_f64() / b.as_secs_f64()
                })
                .collect();
            ratios.sort_by(f64::total_cmp);
            eprintln!(
                "overhead/{}/{rows}: {:.3} (quartiles {:.3} to {:.3})",
                case.name, ratios[100], ratios[50], ratios[150]
            );
        }
    }
}

/// `palisade build`'s self-test (both engines and their comparison) on the CNN, and on
/// `BENCH_SELFTEST_MODEL` when set.
fn self_test(c: &mut Criterion) {
    library();
    let mut dirs = vec![];
    let tmp = tempfile::tempdir().expect("tempdir");
    let cnn = tmp.path().join("cnn");
    std::fs::create_dir_all(&cnn).expect("mkdir");
    let corpus = repo().join("fixtures/models/corpus");
    for file in ["torch_cnn_cifar.onnx", "torch_cnn_cifar.onnx.data"] {
        std::fs::copy(corpus.join(file), cnn.join(file)).expect("copy");
    }
    std::fs::write(
        cnn.join("palisade.yaml"),
        "name: cnn\nversion: \"1\"\nowners: [a@example.com]\nmodel: {path: torch_cnn_cifar.onnx, format: onnx}\n",
    )
    .expect("manifest");
    dirs.push(("cnn_cifar".to_owned(), cnn));
    if let Some(dir) = std::env::var_os("BENCH_SELFTEST_MODEL") {
        dirs.push(("large_model".to_owned(), PathBuf::from(dir)));
    }
    let mut group = c.benchmark_group("selftest");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, dir) in dirs {
        let manifest_path = dir.join("palisade.yaml");
        let manifest =
            palisade_bundle::Manifest::parse(&manifest_path, &std::fs::read(&manifest_path).expect("read"))
                .expect("manifest");
        let model_path = manifest.model.as_ref().and_then(|m| m.path()).expect("onnx").under(&dir);
        let size: u64 = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        eprintln!("selftest/{name}: {:.1} MB on disk", size as f64 / 1e6);
        group.bench_function(format!("{name}/build"), |b| {
            b.iter(|| {
                let built = palisade_runtime::selftest::build(&manifest, &model_path, &Default::default())
                    .expect("self-test passes");
                assert!(built.compared, "{:?}", built.notes);
                black_box(built.self_test)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = engines, interleaved_overhead, self_test
}
criterion_main!(benches);
