//! The executor's own cost per hop: graphs whose hops answer at once (no model, no
//! authorization, no audit), so what is measured is routing, tensor hand-over and the
//! node walk. `cargo bench -p palisade-graph --bench hops`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_bundle::Manifest;
use palisade_bundle::graph::ModelTarget;
use palisade_core::{DataType, Dim, ModelSignature, Tensor, TensorData, TensorSpec};
use palisade_graph::{Catalog, CatalogEntry, Graph, Hop, HopFuture, Placement, compile};

struct Same;

impl Catalog for Same {
    fn lookup(&self, _: &ModelTarget) -> Result<CatalogEntry, String> {
        let x = TensorSpec {
            name: "X".into(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Dynamic, Dim::Fixed(4)],
            allow_nan: false,
            labels: None,
        };
        Ok(CatalogEntry {
            signature: ModelSignature { inputs: vec![x.clone()], outputs: vec![x] },
            uses: vec![],
        })
    }
}

/// Answers its input.
struct Echo;

impl Hop for Echo {
    type Error = ();
    fn call<'a>(
        &'a self,
        _: &'a str,
        _: &'a ModelTarget,
        inputs: Vec<Tensor>,
        _: Placement,
    ) -> HopFuture<'a, ()> {
        Box::pin(async move { Ok(inputs) })
    }
    fn timer(&self, _: std::time::Duration) -> palisade_graph::Timer {
        Box::pin(std::future::pending())
    }
    fn refuses(&self, _: &()) -> bool {
        true
    }
}

fn graph(body: &str) -> Graph {
    let text = format!("name: g\nversion: \"1\"\nowners: [a@example.com]\n{body}");
    compile(&Manifest::parse(Path::new("palisade.yaml"), text.as_bytes()).unwrap(), &Same, Some(1)).unwrap()
}

fn chain(n: usize) -> String {
    let mut body = String::from("graph:\n");
    for i in 0..n {
        let fields = " ".repeat(2 * i + 2);
        if i == 0 {
            body.push_str("  name: n0\n  model: m\n");
        } else {
            body.push_str(&format!("{}- name: n{i}\n{fields}model: m\n", " ".repeat(2 * i)));
        }
        if i + 1 < n {
            body.push_str(&format!("{fields}children:\n"));
        }
    }
    body
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let row = vec![Tensor::new("X", vec![1, 4], TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2])).unwrap()];
    for n in [1, 4] {
        let g = graph(&chain(n));
        assert_eq!(g.nodes().len(), n);
        c.bench_function(&format!("chain of {n} model nodes"), |b| {
            b.iter(|| runtime.block_on(g.run(&Echo, row.clone(), None)).unwrap())
        });
    }
    let split = graph("traffic: [{model: 'a', weight: 90}, {model: 'b', weight: 10}]\n");
    c.bench_function("traffic split, 2 arms", |b| {
        b.iter(|| runtime.block_on(split.run(&Echo, row.clone(), None)).unwrap())
    });
    let sticky =
        graph("traffic: [{model: 'a', weight: 90}, {model: 'b', weight: 10}]\nsticky: {header: x-user}\n");
    c.bench_function("traffic split, 2 arms, sticky", |b| {
        b.iter(|| runtime.block_on(sticky.run(&Echo, row.clone(), Some(b"user-42"))).unwrap())
    });
    let combine = graph(
        "graph:\n  name: avg\n  implementation: AVERAGE_COMBINER\n  children:\n  - {name: a, model: a}\n  - {name: b, model: b}\n  - {name: c, model: c}\n",
    );
    c.bench_function("AVERAGE_COMBINER over 3 children", |b| {
        b.iter(|| runtime.block_on(combine.run(&Echo, row.clone(), None)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
