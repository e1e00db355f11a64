//! Prints the CRD (what `palisade k8s crd` prints), without building the CLI.
#![allow(missing_docs)]

fn main() -> Result<(), palisade_k8s::Error> {
    print!("{}", palisade_k8s::crd_yaml()?);
    Ok(())
}
