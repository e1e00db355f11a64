//! mahalanobis
