//! Is a binary statically linked? A `FROM scratch` image has no loader and no libc.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::ImageError;

/// The CPU a binary is for, named as OCI image configs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86-64.
    Amd64,
    /// 64-bit ARM.
    Arm64,
}

impl Arch {
    /// The OCI `architecture` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const PT_INTERP: u32 = 3;
const MAX_PROGRAM_HEADERS: u16 = 4096;

/// Checks that `path` is a 64-bit little-endian ELF executable with no program
/// interpreter (statically linked, static-pie included), and returns its architecture.
pub fn check_static(path: &Path) -> Result<Arch, ImageError> {
    let refuse = |problem: &str| ImageError::Binary { path: path.to_owned(), problem: problem.to_owned() };
    let mut file = File::open(path).map_err(ImageError::io(path, "open"))?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).map_err(|_| refuse("not an ELF executable (too short)"))?;
    if header[..4] != *b"\x7fELF" {
        return Err(refuse("not an ELF executable"));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err(refuse("not a 64-bit little-endian ELF executable"));
    }
    let u16_at = |bytes: &[u8], at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let arch = match u16_at(&header, 18) {
        EM_X86_64 => Arch::Amd64,
        EM_AARCH64 => Arch::Arm64,
        other => return Err(refuse(&format!("ELF machine {other} is neither x86-64 nor aarch64"))),
    };
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&header[32..40]);
    let phoff = u64::from_le_bytes(phoff);
    let phentsize = u16_at(&header, 54);
    let phnum = u16_at(&header, 56);
    if phnum > MAX_PROGRAM_HEADERS || (phnum > 0 && phentsize < 4) {
        return Err(refuse("malformed ELF program headers"));
    }
    for i in 0..u64::from(phnum) {
        let mut p_type = [0u8; 4];
        file.seek(SeekFrom::Start(phoff.saturating_add(i * u64::from(phentsize))))
            .and_then(|_| file.read_exact(&mut p_type))
            .map_err(|_| refuse("malformed ELF program headers"))?;
        if u32::from_le_bytes(p_type) == PT_INTERP {
            return Err(refuse(
                "dynamically linked (it names a program interpreter), so it cannot run in a FROM scratch image; build a static one with scripts/build-static.sh and pass it with --binary",
            ));
        }
    }
    Ok(arch)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A minimal ELF64 header for x86-64 with the given program header types.
    pub(crate) fn elf_with(program_headers: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[16..18].copy_from_slice(&2u16.to_le_bytes());
        bytes[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&(program_headers.len() as u16).to_le_bytes());
        for p_type in program_headers {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&p_type.to_le_bytes());
            bytes.extend(ph);
        }
        bytes
    }

    #[test]
    fn static_binaries_pass_and_dynamic_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, elf_with(&[1, 2, 1])).unwrap();
        assert_eq!(check_static(&path).unwrap(), Arch::Amd64);
        std::fs::write(&path, elf_with(&[6, PT_INTERP, 1])).unwrap();
        let err = check_static(&path).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
        std::fs::write(&path, b"#!/bin/sh\necho hi\n").unwrap();
        assert!(check_static(&path).unwrap_err().to_string().contains("not an ELF"));
        let mut truncated = elf_with(&[1]);
        truncated[56..58].copy_from_slice(&9u16.to_le_bytes());
        std::fs::write(&path, truncated).unwrap();
        assert!(check_static(&path).unwrap_err().to_string().contains("malformed"));
    }

    #[test]
    fn the_host_shell_is_dynamic() {
        let err = check_static(Path::new("/bin/sh")).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
    }
}
