//! Op families, one file each, named as in the kernel contract.

pub mod activation;
pub mod dropout;
pub mod elementwise;
pub mod indexing;
pub mod linear;
pub mod loss;
pub mod map;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod rnn;
pub mod sign_mask;
pub mod softmax;
