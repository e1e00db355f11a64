//! kernel_shap
