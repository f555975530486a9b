//! Tests of `layers::rnn`: every gradient of a two-layer bidirectional stack against
//! central differences, and the argument checks.

use super::*;
use crate::autograd::test_util::{assert_central_differences, lcg};
use ndarray::{Array, Dimension};

const OPTS: RnnOptions = RnnOptions { num_layers: 2, bias: true, batch_first: true, bidirectional: true };
/// N, T, I, H of the checked stacks
const N: usize = 2;
const T: usize = 3;
const I: usize = 3;
const H: usize = 2;

/// Every array of the weights in order: per entry weight_ih, weight_hh, bias_ih, bias_hh.
fn flatten(weights: &[RnnWeights<f64>]) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for w in weights {
        out.push(w.weight_ih.iter().copied().collect());
        out.push(w.weight_hh.iter().copied().collect());
        out.push(w.bias_ih.as_ref().unwrap().to_vec());
        out.push(w.bias_hh.as_ref().unwrap().to_vec());
    }
    out
}

/// `weights` with their values replaced by `vals` (as `flatten` orders them).
fn unflatten(weights: &[RnnWeights<f64>], vals: &[Vec<f64>]) -> Vec<RnnWeights<f64>> {
    let like = |a: &Array2<f64>, v: &[f64]| Array2::from_shape_vec(a.raw_dim(), v.to_vec()).unwrap();
    weights
        .iter()
        .zip(vals.chunks(4))
        .map(|(w, v)| RnnWeights {
            weight_ih: like(&w.weight_ih, &v[0]),
            weight_hh: like(&w.weight_hh, &v[1]),
            bias_ih: Some(Array1::from_vec(v[2].clone())),
            bias_hh: Some(Array1::from_vec(v[3].clone())),
        })
        .collect()
}

fn array3(v: &[f64], shape: (usize, usize, usize)) -> Array3<f64> {
    Array3::from_shape_vec(shape, v.to_vec()).unwrap()
}

fn dot<D: Dimension>(a: &Array<f64, D>, u: &[f64]) -> f64 {
    a.iter().zip(u).map(|(a, b)| a * b).sum()
}

#[test]
fn lstm_gradients_match_central_differences() {
    let lstm = Lstm::<f64>::new(I, H, OPTS, &mut Rng::new(4));
    let states = (4, N, H);
    let mut s = 17;
    // values: x, h_0, c_0, then the weights
    let mut vals = vec![lcg(&mut s, N * T * I), lcg(&mut s, 4 * N * H), lcg(&mut s, 4 * N * H)];
    vals.extend(flatten(&lstm.weights));
    let (u, v, w) = (lcg(&mut s, N * T * 2 * H), lcg(&mut s, 4 * N * H), lcg(&mut s, 4 * N * H));
    let run = |vals: &[Vec<f64>]| {
        let layer = Lstm { weights: unflatten(&lstm.weights, &vals[3..]), ..lstm.clone() };
        let (x, h0, c0) = (array3(&vals[0], (N, T, I)), array3(&vals[1], states), array3(&vals[2], states));
        let (out, cache) = layer.forward(x.view(), Some((h0.view(), c0.view()))).unwrap();
        let loss = dot(&out.output, &u) + dot(&out.h_n, &v) + dot(&out.c_n, &w);
        let g = layer
            .backward(&cache, array3(&u, (N, T, 2 * H)).view(), Some(array3(&v, states).view()), Some(array3(&w, states).view()))
            .unwrap();
        let mut grads = vec![g.input.iter().copied().collect(), g.h_0.iter().copied().collect(), g.c_0.iter().copied().collect()];
        grads.extend(flatten(&g.weights));
        (loss, grads)
    };
    let (_, analytic) = run(&vals);
    assert_central_differences(&mut vals, &analytic, |p| run(p).0, "lstm");
}

#[test]
fn gru_gradients_match_central_differences() {
    let gru = Gru::<f64>::new(I, H, OPTS, &mut Rng::new(5));
    let states = (4, N, H);
    let mut s = 19;
    let mut vals = vec![lcg(&mut s, N * T * I), lcg(&mut s, 4 * N * H)];
    vals.extend(flatten(&gru.weights));
    let (u, v) = (lcg(&mut s, N * T * 2 * H), lcg(&mut s, 4 * N * H));
    let run = |vals: &[Vec<f64>]| {
        let layer = Gru { weights: unflatten(&gru.weights, &vals[2..]), ..gru.clone() };
        let (x, h0) = (array3(&vals[0], (N, T, I)), array3(&vals[1], states));
        let (out, cache) = layer.forward(x.view(), Some(h0.view())).unwrap();
        let loss = dot(&out.output, &u) + dot(&out.h_n, &v);
        let g = layer.backward(&cache, array3(&u, (N, T, 2 * H)).view(), Some(array3(&v, states).view())).unwrap();
        let mut grads = vec![g.input.iter().copied().collect(), g.h_0.iter().copied().collect()];
        grads.extend(flatten(&g.weights));
        (loss, grads)
    };
    let (_, analytic) = run(&vals);
    assert_central_differences(&mut vals, &analytic, |p| run(p).0, "gru");
}

#[test]
fn a_one_layer_lstm_is_the_tapes_rnn_layer() {
    let lstm = Lstm::<f64>::new(I, H, RnnOptions::default(), &mut Rng::new(6));
    let x = Array3::from_shape_fn((T, N, I), |(t, n, i)| ((t * 7 + n * 3 + i) as f64 * 0.37).sin());
    let (out, _) = lstm.forward(x.view(), None).unwrap();
    let mut tape = crate::autograd::tape::Tape::<f64>::new();
    let w = &lstm.weights[0];
    let leaf = |tape: &mut crate::autograd::tape::Tape<f64>, a: &[f64], shape: &[usize]| tape.leaf(a.to_vec(), shape).unwrap();
    let xv = leaf(&mut tape, x.as_slice().unwrap(), &[T, N, I]);
    let wi = leaf(&mut tape, w.weight_ih.as_slice().unwrap(), &[4 * H, I]);
    let wh = leaf(&mut tape, w.weight_hh.as_slice().unwrap(), &[4 * H, H]);
    let bi = leaf(&mut tape, w.bias_ih.as_ref().unwrap().as_slice().unwrap(), &[4 * H]);
    let bh = leaf(&mut tape, w.bias_hh.as_ref().unwrap().as_slice().unwrap(), &[4 * H]);
    let y = tape.rnn_layer(xv, wi, wh, Some((bi, bh)), true, false).unwrap();
    assert_eq!(out.output.as_slice().unwrap(), tape.value(y).unwrap());
}

#[test]
fn bad_arguments_are_errors() {
    let mut lstm = Lstm::<f32>::new(3, 2, RnnOptions::default(), &mut Rng::new(0));
    assert!(lstm.forward(Array3::zeros((4, 2, 5)).view(), None).is_err()); // 5 features, not 3
    let (h0, c0) = (Array3::zeros((1, 3, 2)), Array3::zeros((1, 2, 2)));
    assert!(lstm.forward(Array3::zeros((4, 2, 3)).view(), Some((h0.view(), c0.view()))).is_err()); // batch 3 != 2
    let x = Array3::zeros((4, 2, 3));
    let (_, cache) = lstm.forward(x.view(), None).unwrap();
    assert!(lstm.backward(&cache, Array3::zeros((4, 2, 3)).view(), None, None).is_err()); // H is 2
    lstm.weights[0].bias_hh = None;
    assert!(lstm.forward(Array3::zeros((4, 2, 3)).view(), None).is_err()); // one bias only
    lstm.num_layers = 2;
    assert!(lstm.forward(Array3::zeros((4, 2, 3)).view(), None).is_err()); // weights for one layer
    let gru = Gru::<f32>::new(3, 2, RnnOptions { bias: false, ..Default::default() }, &mut Rng::new(0));
    assert!(gru.weights[0].bias_ih.is_none());
    let (out, cache) = gru.forward(x.view(), None).unwrap();
    assert!(out.output.iter().all(|&v| v == 0.0));
    let g = gru.backward(&cache, Array3::ones((4, 2, 2)).view(), None).unwrap();
    assert!(g.weights[0].bias_hh.is_none());
}
