//! The kernels shared by `SVMClassifier` and `SVMRegressor`.

use std::str::FromStr;

use crate::OnnxMlError;

/// `kernel_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelType {
    /// `dot(x, v)`.
    #[default]
    Linear,
    /// `(gamma * dot(x, v) + coef0) ^ degree`.
    Poly,
    /// `exp(-gamma * |x - v|²)`.
    Rbf,
    /// `tanh(gamma * dot(x, v) + coef0)`.
    Sigmoid,
}

impl FromStr for KernelType {
    type Err = OnnxMlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "LINEAR" => KernelType::Linear,
            "POLY" => KernelType::Poly,
            "RBF" => KernelType::Rbf,
            "SIGMOID" => KernelType::Sigmoid,
            other => return Err(OnnxMlError::unknown_value("kernel_type", other)),
        })
    }
}

/// A kernel with its `kernel_params` (`gamma`, `coef0`, `degree`; missing ones are 0).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Kernel {
    kind: KernelType,
    gamma: f32,
    coef0: f32,
    degree: f32,
}

impl Kernel {
    /// The kernel `kind` with `kernel_params`.
    pub fn new(kind: KernelType, params: &[f32]) -> Result<Self, OnnxMlError> {
        if params.len() > 3 {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "kernel_params",
                reason: format!("{} entries, at most 3 (gamma, coef0, degree)", params.len()),
            });
        }
        let at = |i: usize| params.get(i).copied().unwrap_or(0.0);
        Ok(Kernel { kind, gamma: at(0), coef0: at(1), degree: at(2) })
    }

    /// The plain dot product kernel (liblinear mode).
    pub fn linear() -> Self {
        Kernel::default()
    }

    /// `k(x, v)` in f32, as onnxruntime computes it.
    pub fn eval(&self, x: &[f32], v: &[f32]) -> f32 {
        match self.kind {
            KernelType::Rbf => {
                let sum: f32 = x.iter().zip(v).fold(0.0, |s, (a, b)| {
                    let d = a - b;
                    s + d * d
                });
                (-self.gamma * sum).exp()
            }
            kind => {
                let dot: f32 = x.iter().zip(v).fold(0.0, |s, (a, b)| s + a * b);
                match kind {
                    KernelType::Poly => (self.gamma * dot + self.coef0).powf(self.degree),
                    KernelType::Sigmoid => (self.gamma * dot + self.coef0).tanh(),
                    _ => dot,
                }
            }
        }
    }
}
