//! Trains a two-layer MLP on the crate's reverse-mode tape, from Rust alone (no Python,
//! no `python` feature): two interleaved half-moons of points, classified by
//! 2 -> 32 -> 32 -> 2 with tanh and a cross-entropy loss, full-batch SGD with momentum.
//!
//! `cargo run --release --example train_mlp -p rust_core`
//!
//! The parameters start from `layers::Linear`'s PyTorch initialisation; each step
//! records the forward pass on a fresh `Tape`, takes the gradients from `backward` and
//! updates the parameters with `ops::optim::Sgd`. The process exits with status 1 unless
//! the final loss is well below the first one and the points are classified.

use _core::layers::{init::Rng, Activation, Linear, Tape};
use _core::ops::loss::Reduction;
use _core::ops::optim::Sgd;
use _core::Result;

const POINTS: usize = 512;
const HIDDEN: usize = 32;
const STEPS: usize = 300;
const PRINT_EVERY: usize = 25;

/// Two half-moons, `n` points (even), noise of standard deviation `noise`: class 0 on the
/// upper arc of the unit circle, class 1 on the lower arc shifted right by 1 and up by
/// 1/2 (scikit-learn's make_moons layout). Returns (x (n, 2) row-major, labels).
fn two_moons(n: usize, noise: f64, rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let (mut x, mut labels) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    for i in 0..n {
        let t = rng.uniform(0.0, std::f64::consts::PI);
        let (px, py) = if i % 2 == 0 { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
        x.push((px + noise * rng.normal()) as f32);
        x.push((py + noise * rng.normal()) as f32);
        labels.push((i % 2) as i64);
    }
    (x, labels)
}

/// A parameter's values, shape and momentum buffer.
struct Param {
    value: Vec<f32>,
    shape: Vec<usize>,
    momentum: Vec<f32>,
}

impl Param {
    fn new(value: Vec<f32>, shape: &[usize]) -> Self {
        let momentum = vec![0.0; value.len()];
        Param { value, shape: shape.to_vec(), momentum }
    }
}

/// The three layers' weights and biases, from PyTorch's default initialisation.
fn init_params(rng: &mut Rng) -> Vec<Param> {
    let mut params = Vec::new();
    for (fin, fout) in [(2, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2)] {
        let layer = Linear::<f32>::new(fin, fout, true, rng);
        params.push(Param::new(layer.weight.iter().copied().collect(), &[fout, fin]));
        params.push(Param::new(layer.bias.expect("made with a bias").to_vec(), &[fout]));
    }
    params
}

/// One step: forward on a fresh tape, backward, SGD update. Returns (loss, accuracy)
/// before the update.
fn step(params: &mut [Param], x: &[f32], labels: &[i64], sgd: &Sgd) -> Result<(f32, f32)> {
    let mut tape = Tape::<f32>::new();
    let input = tape.constant(x.to_vec(), &[labels.len(), 2])?;
    let vars = params.iter().map(|p| tape.leaf(p.value.clone(), &p.shape)).collect::<Result<Vec<_>>>()?;
    let mut h = input;
    for (layer, wb) in vars.chunks(2).enumerate() {
        h = tape.linear(h, wb[0], Some(wb[1]))?;
        if layer < 2 {
            h = tape.activation(h, Activation::Tanh)?;
        }
    }
    let logits = h;
    let loss = tape.cross_entropy(logits, labels, Reduction::Mean)?;
    let correct = tape
        .value(logits)?
        .chunks_exact(2)
        .zip(labels)
        .filter(|(row, &label)| (row[1] > row[0]) == (label == 1))
        .count();
    let grads = tape.backward(loss, None)?;
    for (p, v) in params.iter_mut().zip(&vars) {
        let g = grads[v.index()].as_deref().expect("every parameter is upstream of the loss");
        sgd.step(&mut p.value, g, Some(&mut p.momentum))?;
    }
    Ok((tape.value(loss)?[0], correct as f32 / labels.len() as f32))
}

fn main() -> Result<()> {
    let mut rng = Rng::new(2024);
    let (x, labels) = two_moons(POINTS, 0.1, &mut rng);
    let mut params = init_params(&mut rng);
    let mut sgd = Sgd { lr: 0.1, momentum: 0.9, dampening: 0.0, weight_decay: 0.0, nesterov: false, first_step: true };
    let (mut first_loss, mut last) = (None, (f32::NAN, 0.0));
    for s in 0..STEPS {
        last = step(&mut params, &x, &labels, &sgd)?;
        sgd.first_step = false; // momentum buffers hold a gradient from here on
        first_loss.get_or_insert(last.0);
        if s % PRINT_EVERY == 0 || s + 1 == STEPS {
            println!("step {s:4}  loss {:.4}  accuracy {:.3}", last.0, last.1);
        }
    }
    let first = first_loss.unwrap_or(f32::NAN);
    let (loss, accuracy) = last;
    // well below: a quarter of the first loss (which is near ln 2 for a fresh model), and
    // the moons separated
    if !(loss < 0.25 * first && accuracy >= 0.95) {
        eprintln!("training failed: loss {first:.4} -> {loss:.4}, accuracy {accuracy:.3}");
        std::process::exit(1);
    }
    println!("trained: loss {first:.4} -> {loss:.4}, accuracy {accuracy:.3}");
    Ok(())
}
